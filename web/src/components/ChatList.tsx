// The chat list: counterpart, course, last message, unread badge and online dot, most recent
// first (the adapter keeps the order), updated live from the store.

import { useEffect, useRef } from 'react';
import { useAppDispatch, useAppSelector } from '../app/hooks';
import {
  chatOpened,
  selectActiveChatId,
  selectChatState,
  selectChats,
  selectMeId,
  selectOnlineUsers,
} from '../features/chat/chatSlice';
import { previewText } from '../features/chat/messages';
import { counterpart } from '../features/chat/permissions';
import Avatar from './Avatar';
import { listTime } from './format';

export default function ChatList() {
  const dispatch = useAppDispatch();
  const chats = useAppSelector(selectChats);
  const meId = useAppSelector(selectMeId) ?? '';
  const activeChatId = useAppSelector(selectActiveChatId);
  const online = useAppSelector(selectOnlineUsers);
  const { chatsLoaded, loading, typingByChat } = useAppSelector(selectChatState);

  // Back from a chat (phone width): return focus to that chat's entry instead of the page body.
  const buttons = useRef(new Map<string, HTMLButtonElement>());
  const previous = useRef<string | null>(activeChatId);
  useEffect(() => {
    const closed = previous.current;
    previous.current = activeChatId;
    if (closed && !activeChatId && (!document.activeElement || document.activeElement === document.body)) {
      buttons.current.get(closed)?.focus();
    }
  }, [activeChatId]);

  return (
    <nav className="chat-list" aria-labelledby="chat-list-title">
      <h2 id="chat-list-title" className="section-title">
        Chats
      </h2>
      {!chatsLoaded && loading.chats && <p className="muted pad">Loading chats…</p>}
      {chatsLoaded && chats.length === 0 && <p className="muted pad">No chats yet.</p>}
      <ul className="plain-list">
        {chats.map((chat) => {
          const other = counterpart(chat, meId);
          const name = other?.name ?? 'Unknown';
          const isOnline = Boolean(other && online[other.id]);
          const typing = (typingByChat[chat.id] ?? []).length > 0;
          const mine = chat.lastMessage?.senderId === meId;
          return (
            <li key={chat.id}>
              <button
                ref={(el) => {
                  if (el) buttons.current.set(chat.id, el);
                  else buttons.current.delete(chat.id);
                }}
                type="button"
                className="chat-item"
                aria-current={chat.id === activeChatId ? 'true' : undefined}
                onClick={() => dispatch(chatOpened(chat.id))}
              >
                <Avatar name={name} online={isOnline} />
                <span className="chat-item-body">
                  <span className="chat-item-top">
                    <span className="person-name">{name}</span>
                    <span className="sr-only">{isOnline ? ', online' : ', offline'}</span>
                    <span className="muted small chat-item-time">
                      {listTime(chat.lastMessage?.createdAt ?? chat.updatedAt)}
                    </span>
                  </span>
                  <span className="chat-item-course small">{chat.course.title}</span>
                  <span className="chat-item-bottom">
                    <span className={`chat-item-preview small ${typing ? 'typing-text' : 'muted'}`}>
                      {typing ? 'typing…' : `${mine ? 'You: ' : ''}${previewText(chat.lastMessage)}`}
                    </span>
                    {chat.unread > 0 && (
                      <span className="badge">
                        {chat.unread > 99 ? '99+' : chat.unread}
                        <span className="sr-only"> unread</span>
                      </span>
                    )}
                  </span>
                </span>
              </button>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
