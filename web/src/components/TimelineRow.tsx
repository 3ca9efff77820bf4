// One row of the message log: a day separator, a confirmed message (with "Seen" under my last
// one once the other side read it), or my own unacked send with its state and a retry.
// Content is rendered as text, never as HTML.

import { memo } from 'react';
import { useAppDispatch, useAppSelector } from '../app/hooks';
import { messageDiscarded, messageRetried, selectMeId } from '../features/chat/chatSlice';
import { timeLabel, type TimelineItem } from '../features/chat/messages';

function TimelineRow({ item, otherName }: { item: TimelineItem; otherName: string }) {
  const dispatch = useAppDispatch();
  const meId = useAppSelector(selectMeId);

  if (item.kind === 'day') {
    return (
      <li className="day-separator">
        <span>{item.label}</span>
      </li>
    );
  }

  if (item.kind === 'pending') {
    const p = item.pending;
    return (
      <li className={`message own ${p.status}`}>
        <div className="bubble">
          <span className="sr-only">You: </span>
          <p className="content">{p.content}</p>
        </div>
        {p.status === 'sending' ? (
          <div className="receipt muted">Sending…</div>
        ) : (
          <div className="send-failed" role="alert">
            <span>Not sent. {p.error}</span>
            <button
              type="button"
              className="link-button"
              onClick={() => dispatch(messageRetried({ chatId: p.chatId, clientMsgId: p.clientMsgId }))}
            >
              Retry
            </button>
            <button
              type="button"
              className="link-button"
              onClick={() => dispatch(messageDiscarded({ chatId: p.chatId, clientMsgId: p.clientMsgId }))}
            >
              Discard
            </button>
          </div>
        )}
      </li>
    );
  }

  const m = item.message;
  const own = m.senderId === meId;
  return (
    <li className={`message ${own ? 'own' : 'theirs'}`} data-seq={m.seq}>
      <div className="bubble">
        <span className="sr-only">{own ? 'You' : otherName}: </span>
        {m.content && <p className="content">{m.content}</p>}
        {m.attachment && (
          <a className="attachment" href={m.attachment.url} target="_blank" rel="noopener noreferrer">
            {m.attachment.name}
          </a>
        )}
        <time className="time" dateTime={m.createdAt}>
          {timeLabel(m.createdAt)}
        </time>
      </div>
      {item.seen && <div className="receipt seen">Seen</div>}
    </li>
  );
}

export default memo(TimelineRow);
