// One open chat: header, the message log (older pages load when scrolled to the top, the
// position is kept), typing indicator, and the composer or the upgrade prompt.

import { useCallback, useEffect, useLayoutEffect, useRef } from 'react';
import { useAppDispatch, useAppSelector } from '../app/hooks';
import {
  chatClosed,
  selectChatById,
  selectCounterpart,
  selectHistory,
  selectIsOnline,
  selectRefusal,
  selectTimeline,
  selectTypingNames,
} from '../features/chat/chatSlice';
import { loadOlder } from '../features/chat/chatThunks';
import Composer from './Composer';
import TimelineRow from './TimelineRow';
import UpgradePrompt from './UpgradePrompt';

/** Distance from the top (px) at which the previous page is requested. */
const LOAD_OLDER_THRESHOLD = 120;
/** Distance from the bottom (px) within which new messages keep the view pinned to the end. */
const STICK_TO_BOTTOM = 80;

export default function MessageView({ chatId }: { chatId: string }) {
  const dispatch = useAppDispatch();
  const chat = useAppSelector((s) => selectChatById(s, chatId));
  const other = useAppSelector((s) => selectCounterpart(s, chatId));
  const online = useAppSelector((s) => selectIsOnline(s, other?.id));
  const timeline = useAppSelector((s) => selectTimeline(s, chatId));
  const history = useAppSelector((s) => selectHistory(s, chatId));
  const typingNames = useAppSelector((s) => selectTypingNames(s, chatId));
  const refusal = useAppSelector((s) => selectRefusal(s, chatId));

  const logRef = useRef<HTMLDivElement>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);

  // On a phone the list that had focus is now hidden: move focus to this chat's heading so
  // keyboard and screen reader users land in the conversation.
  useEffect(() => {
    const active = document.activeElement as HTMLElement | null;
    if (!active || active === document.body || active.offsetParent === null) headingRef.current?.focus();
  }, []);
  // Scroll geometry before the latest render, to keep the position when older rows are prepended.
  const before = useRef({ firstKey: '', lastKey: '', height: 0, top: 0, atBottom: true });

  const firstKey = timeline.find((i) => i.kind !== 'day')?.key ?? '';
  const lastItem = timeline[timeline.length - 1];
  const lastKey = lastItem?.key ?? '';

  const maybeLoadOlder = useCallback(() => {
    const el = logRef.current;
    if (!el || !history?.hasMore || history.loading) return;
    if (el.scrollTop < LOAD_OLDER_THRESHOLD) void dispatch(loadOlder(chatId));
  }, [chatId, dispatch, history?.hasMore, history?.loading]);

  useLayoutEffect(() => {
    const el = logRef.current;
    if (!el) return;
    const prev = before.current;
    const ownNew = lastItem?.kind === 'pending' && lastKey !== prev.lastKey;
    if (prev.firstKey && firstKey !== prev.firstKey && lastKey === prev.lastKey) {
      // Older messages were prepended: keep what the user was looking at in place.
      el.scrollTop = prev.top + (el.scrollHeight - prev.height);
    } else if (prev.atBottom || ownNew || !prev.firstKey) {
      el.scrollTop = el.scrollHeight;
    }
    before.current = {
      firstKey,
      lastKey,
      height: el.scrollHeight,
      top: el.scrollTop,
      atBottom: el.scrollHeight - el.scrollTop - el.clientHeight < STICK_TO_BOTTOM,
    };
    // A first page shorter than the viewport cannot be scrolled: fetch more right away.
    if (el.scrollHeight <= el.clientHeight) maybeLoadOlder();
  }, [firstKey, lastKey, lastItem?.kind, timeline.length, maybeLoadOlder]);

  const onScroll = () => {
    const el = logRef.current;
    if (!el) return;
    before.current.top = el.scrollTop;
    before.current.height = el.scrollHeight;
    before.current.atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_TO_BOTTOM;
    maybeLoadOlder();
  };

  if (!chat) return null;
  const name = other?.name ?? 'Unknown';
  const typingText =
    typingNames.length === 0
      ? ''
      : typingNames.length === 1
        ? `${typingNames[0]} is typing…`
        : `${typingNames.join(', ')} are typing…`;

  return (
    <section className="conversation" aria-labelledby="conversation-title">
      <header className="conversation-header">
        <button
          type="button"
          className="back-button"
          aria-label="Back to chats"
          onClick={() => dispatch(chatClosed())}
        >
          ‹
        </button>
        <div className="conversation-heading">
          <h2 id="conversation-title" ref={headingRef} tabIndex={-1}>
            {name}
          </h2>
          <p className="muted small">
            {chat.course.title} ·{' '}
            <span className={online ? 'online-text' : undefined}>{online ? 'Online' : 'Offline'}</span>
          </p>
        </div>
      </header>

      <div
        ref={logRef}
        className="message-log"
        role="log"
        aria-label={`Messages with ${name}`}
        tabIndex={0}
        onScroll={onScroll}
      >
        {history?.loading && <p className="log-note">Loading earlier messages…</p>}
        {history?.loaded && !history.hasMore && !history.loading && (
          <p className="log-note">
            {timeline.length === 0 ? `This is the start of your chat with ${name}.` : 'Start of the conversation'}
          </p>
        )}
        <ol className="timeline">
          {timeline.map((item) => (
            <TimelineRow key={item.key} item={item} otherName={name} />
          ))}
        </ol>
      </div>

      <div className="typing-indicator" aria-live="polite">
        {typingText}
      </div>

      {refusal ? <UpgradePrompt refusal={refusal} withName={name} /> : <Composer chatId={chatId} />}
    </section>
  );
}
