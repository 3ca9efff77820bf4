// The signed-in page: header, connection banner, the chat list and people on the side,
// the open chat (or the upgrade prompt of a refused start) in the main pane. On a phone
// width only one pane shows at a time.

import { useEffect } from 'react';
import { useAppDispatch, useAppSelector } from '../app/hooks';
import {
  chatClosed,
  selectActiveChatId,
  selectStartRefusal,
  selectUnreadTotal,
} from '../features/chat/chatSlice';
import { roleLabel } from '../features/chat/permissions';
import { selectSession, signOutDemo } from '../features/session/sessionSlice';
import ChatList from './ChatList';
import ConnectionBanner from './ConnectionBanner';
import ContactList from './ContactList';
import ErrorToast from './ErrorToast';
import MessageView from './MessageView';
import UpgradePrompt from './UpgradePrompt';

export default function ChatPage() {
  const dispatch = useAppDispatch();
  const { user, mode } = useAppSelector(selectSession);
  const activeChatId = useAppSelector(selectActiveChatId);
  const startRefusal = useAppSelector(selectStartRefusal);
  const unread = useAppSelector(selectUnreadTotal);

  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) Course chat` : 'Course chat';
  }, [unread]);

  const mainOpen = Boolean(activeChatId || startRefusal);

  return (
    <div className={`app ${mainOpen ? 'main-open' : ''}`}>
      <header className="topbar">
        <span className="brand">Course chat</span>
        <span className="whoami">
          <span className="whoami-name">{user?.name}</span>
          <span className="muted small">{roleLabel(user?.role)}</span>
        </span>
        {mode === 'demo' && (
          <button type="button" className="ghost-button" onClick={() => dispatch(signOutDemo())}>
            Switch user
          </button>
        )}
      </header>
      <ConnectionBanner />
      <ErrorToast />
      <div className="panes">
        <aside className="sidebar" aria-label="Chats and people">
          <ChatList />
          <ContactList />
        </aside>
        <main className="main">
          {activeChatId ? (
            <MessageView key={activeChatId} chatId={activeChatId} />
          ) : startRefusal ? (
            <div className="main-notice">
              <button type="button" className="back-button" onClick={() => dispatch(chatClosed())}>
                ‹ Back
              </button>
              <UpgradePrompt refusal={startRefusal} />
            </div>
          ) : (
            <div className="main-empty">
              <p>Select a chat to start messaging.</p>
            </div>
          )}
        </main>
      </div>
    </div>
  );
}
