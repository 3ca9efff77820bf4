import type { UnknownAction } from '@reduxjs/toolkit';
import { describe, expect, it } from 'vitest';
import { CHAT_ID, OTHER_CHAT_ID, STUDENT, TUTOR, chat, message } from '../../test/fixtures';
import { signedIn, sessionExpired } from '../session/sessionSlice';
import reducer, {
  chatOpened,
  chatRefused,
  chatUpserted,
  connectionChanged,
  markedRead,
  messageAcked,
  messageFailed,
  messageReceived,
  messageRetried,
  messageSent,
  messagesReceived,
  presenceChanged,
  readReceived,
  roomJoined,
  selectChats,
  selectIsOnline,
  selectMessages,
  selectPending,
  selectSeenSeq,
  selectTimeline,
  selectTypingNames,
  typingChanged,
  type ChatState,
} from './chatSlice';
import { fetchChats, loadLatest, loadOlder, startChat } from './chatThunks';

/** A chat state signed in as `me`, with the given actions applied. */
function run(me: { id: string; name: string; role: 'user' | 'tutor' }, ...actions: UnknownAction[]): ChatState {
  let state = reducer(undefined, signedIn({ user: me, exp: 9e9 }));
  for (const a of actions) state = reducer(state, a);
  return state;
}
const root = (chat: ChatState) => ({ chat });

describe('chat list', () => {
  it('keeps chats most recent first and moves a chat up when a message arrives', () => {
    const older = chat({ id: OTHER_CHAT_ID, updatedAt: '2025-01-01T00:00:00.000Z' });
    const newer = chat({ updatedAt: '2025-01-05T00:00:00.000Z' });
    let s = run(STUDENT, fetchChats.fulfilled([older, newer], 'r'));
    expect(selectChats(root(s)).map((c) => c.id)).toEqual([CHAT_ID, OTHER_CHAT_ID]);
    s = reducer(
      s,
      messageReceived(message(1, { chatId: OTHER_CHAT_ID, createdAt: '2025-02-01T00:00:00.000Z' })),
    );
    expect(selectChats(root(s)).map((c) => c.id)).toEqual([OTHER_CHAT_ID, CHAT_ID]);
    expect(selectChats(root(s))[0].lastMessage?.seq).toBe(1);
  });

  it('does not let a stale list answer move lastSeq, the last message or the read cursor back', () => {
    let s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), messageReceived(message(1)), messageReceived(message(2)));
    s = reducer(s, markedRead({ chatId: CHAT_ID, seq: 2 }));
    s = reducer(s, fetchChats.fulfilled([chat({ lastSeq: 1, lastMessage: message(1), unread: 1, readSeq: 0 })], 'r2'));
    const c = s.chats.entities[CHAT_ID];
    expect(c.lastSeq).toBe(2);
    expect(c.lastMessage?.seq).toBe(2);
    expect(c.readSeq).toBe(2);
    expect(c.unread).toBe(0);
  });

  it('seeds presence from participants and follows user_online / user_offline', () => {
    let s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'));
    expect(s.onlineUsers[TUTOR.id]).toBe(false);
    s = reducer(s, presenceChanged({ userId: TUTOR.id, online: true }));
    expect(s.onlineUsers[TUTOR.id]).toBe(true);
    // Shown only while this client is connected: otherwise presence is unknown.
    expect(selectIsOnline(root(s), TUTOR.id)).toBe(false);
    s = reducer(s, connectionChanged('connected'));
    expect(selectIsOnline(root(s), TUTOR.id)).toBe(true);
  });
});

describe('messages', () => {
  it('deduplicates by (chatId, seq): live and missed copies of the same message count once', () => {
    const s = run(
      STUDENT,
      fetchChats.fulfilled([chat()], 'r'),
      messageReceived(message(1)),
      messageReceived(message(2)),
      messagesReceived({ chatId: CHAT_ID, messages: [message(2), message(3), message(1)] }),
    );
    expect(selectMessages(root(s), CHAT_ID).map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(s.chats.entities[CHAT_ID].unread).toBe(3);
    expect(s.chats.entities[CHAT_ID].lastSeq).toBe(3);
  });

  it('keeps messages of different chats apart', () => {
    const s = run(STUDENT, messageReceived(message(1)), messageReceived(message(1, { chatId: OTHER_CHAT_ID })));
    expect(selectMessages(root(s), CHAT_ID)).toHaveLength(1);
    expect(selectMessages(root(s), OTHER_CHAT_ID)).toHaveLength(1);
  });

  it('history pages merge in seq order and record whether older pages exist', () => {
    let s = run(STUDENT, fetchChats.fulfilled([chat({ lastSeq: 4 })], 'r'));
    s = reducer(s, loadLatest.pending('r', CHAT_ID));
    expect(s.historyByChat[CHAT_ID].loading).toBe(true);
    s = reducer(s, loadLatest.fulfilled({ messages: [message(3), message(4)], hasMore: true }, 'r', CHAT_ID));
    expect(s.historyByChat[CHAT_ID]).toEqual({ loaded: true, loading: false, hasMore: true });
    s = reducer(s, loadOlder.fulfilled({ messages: [message(1), message(2)], hasMore: false }, 'r', CHAT_ID));
    expect(selectMessages(root(s), CHAT_ID).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(s.historyByChat[CHAT_ID].hasMore).toBe(false);
    // Older history does not count as unread.
    expect(s.chats.entities[CHAT_ID].unread).toBe(0);
  });
});

describe('optimistic sends', () => {
  const sent = messageSent({ chatId: CHAT_ID, content: 'hello', senderId: STUDENT.id });
  const clientMsgId = sent.payload.clientMsgId;

  it('shows a pending message keyed by a fresh clientMsgId', () => {
    const s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), sent);
    expect(clientMsgId).toMatch(/^[0-9a-f-]{36}$/);
    expect(selectPending(root(s), CHAT_ID)).toMatchObject([{ clientMsgId, content: 'hello', status: 'sending' }]);
  });

  it('replaces the pending message by the acked one', () => {
    const acked = message(5, { senderId: STUDENT.id, clientMsgId, content: 'hello' });
    const s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), sent, messageAcked({ chatId: CHAT_ID, clientMsgId, message: acked }));
    expect(selectPending(root(s), CHAT_ID)).toEqual([]);
    expect(selectMessages(root(s), CHAT_ID).map((m) => m.seq)).toEqual([5]);
    // Sending moves my own read cursor.
    expect(s.chats.entities[CHAT_ID].readSeq).toBe(5);
  });

  it('reconciles a pending message seen in `missed` after a reconnect (ack lost)', () => {
    const stored = message(7, { senderId: STUDENT.id, clientMsgId });
    const s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), sent, messagesReceived({ chatId: CHAT_ID, messages: [stored] }));
    expect(selectPending(root(s), CHAT_ID)).toEqual([]);
    expect(selectMessages(root(s), CHAT_ID)).toHaveLength(1);
  });

  it('marks a failed send with a readable reason and lets it be retried', () => {
    let s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), sent, messageFailed({ chatId: CHAT_ID, clientMsgId, code: 'rate_limited' }));
    const failed = selectPending(root(s), CHAT_ID)[0];
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/too quickly/);
    expect(failed.error).not.toMatch(/rate_limited/);
    s = reducer(s, messageRetried({ chatId: CHAT_ID, clientMsgId }));
    expect(selectPending(root(s), CHAT_ID)[0].status).toBe('sending');
  });

  it('turns a not_enrolled send into a refusal naming the course', () => {
    const s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), sent, messageFailed({ chatId: CHAT_ID, clientMsgId, code: 'not_enrolled' }));
    expect(s.refusals[CHAT_ID]).toMatchObject({ code: 'not_enrolled', course: { title: 'Rust for Beginners' } });
  });
});

describe('read cursors and unread counts', () => {
  it('shows "Seen" after a reload from the read cursor the chat list carries', () => {
    const withCursors = chat({
      lastSeq: 2,
      participants: [
        { ...STUDENT, online: true, readSeq: 2 },
        { ...TUTOR, online: false, readSeq: 2 },
      ],
    });
    const s = run(
      STUDENT,
      fetchChats.fulfilled([withCursors], 'r'),
      messagesReceived({ chatId: CHAT_ID, messages: [message(1), message(2, { senderId: STUDENT.id })] }),
    );
    expect(selectSeenSeq(root(s), CHAT_ID)).toBe(2);
  });

  it('shows "Seen" once the other side reads my last message', () => {
    let s = run(
      STUDENT,
      fetchChats.fulfilled([chat()], 'r'),
      messagesReceived({ chatId: CHAT_ID, messages: [message(1), message(2, { senderId: STUDENT.id })] }),
    );
    expect(selectSeenSeq(root(s), CHAT_ID)).toBeNull();
    s = reducer(s, readReceived({ chatId: CHAT_ID, userId: TUTOR.id, seq: 2, readAt: '2025-01-10T12:00:00.000Z' }));
    expect(selectSeenSeq(root(s), CHAT_ID)).toBe(2);
    const rows = selectTimeline(root(s), CHAT_ID).filter((i) => i.kind === 'message');
    expect(rows.map((r) => r.kind === 'message' && r.seen)).toEqual([false, true]);
  });

  it('a cursor never moves back', () => {
    const s = run(
      STUDENT,
      readReceived({ chatId: CHAT_ID, userId: TUTOR.id, seq: 5, readAt: '' }),
      readReceived({ chatId: CHAT_ID, userId: TUTOR.id, seq: 3, readAt: '' }),
    );
    expect(s.readByChat[CHAT_ID][TUTOR.id]).toBe(5);
  });

  it('my read on another device clears the unread badge here (multi-device)', () => {
    let s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), messageReceived(message(1)), messageReceived(message(2)));
    expect(s.chats.entities[CHAT_ID].unread).toBe(2);
    s = reducer(s, readReceived({ chatId: CHAT_ID, userId: STUDENT.id, seq: 1, readAt: '' }));
    expect(s.chats.entities[CHAT_ID].unread).toBe(1);
    s = reducer(s, readReceived({ chatId: CHAT_ID, userId: STUDENT.id, seq: 2, readAt: '' }));
    expect(s.chats.entities[CHAT_ID].unread).toBe(0);
  });

  it('my own message sent from another tab clears unread (sending moves the cursor)', () => {
    const s = run(
      STUDENT,
      fetchChats.fulfilled([chat()], 'r'),
      messageReceived(message(1)),
      messageReceived(message(2, { senderId: STUDENT.id })),
    );
    expect(s.chats.entities[CHAT_ID].unread).toBe(0);
    expect(s.chats.entities[CHAT_ID].readSeq).toBe(2);
  });
});

describe('typing', () => {
  it('tracks typing users per chat, ignores myself, and a message ends the indicator', () => {
    let s = run(
      TUTOR,
      fetchChats.fulfilled([chat()], 'r'),
      typingChanged({ chatId: CHAT_ID, userId: STUDENT.id, isTyping: true }),
      typingChanged({ chatId: CHAT_ID, userId: TUTOR.id, isTyping: true }),
    );
    expect(selectTypingNames(root(s), CHAT_ID)).toEqual(['Sam Student']);
    s = reducer(s, messageReceived(message(1, { senderId: STUDENT.id })));
    expect(selectTypingNames(root(s), CHAT_ID)).toEqual([]);
    s = reducer(s, typingChanged({ chatId: CHAT_ID, userId: STUDENT.id, isTyping: true }));
    s = reducer(s, typingChanged({ chatId: CHAT_ID, userId: STUDENT.id, isTyping: false }));
    expect(selectTypingNames(root(s), CHAT_ID)).toEqual([]);
  });

  it('clears typing when the connection drops', () => {
    let s = run(TUTOR, typingChanged({ chatId: CHAT_ID, userId: STUDENT.id, isTyping: true }));
    s = reducer(s, connectionChanged('reconnecting'));
    expect(s.typingByChat).toEqual({});
  });
});

describe('connection state', () => {
  it('records connected / reconnecting and joined rooms, which survive a reconnect', () => {
    let s = run(STUDENT, connectionChanged('connected'), roomJoined(CHAT_ID), roomJoined(CHAT_ID));
    expect(s.connection).toMatchObject({ connected: true, reconnecting: false, joinedRooms: [CHAT_ID] });
    s = reducer(s, connectionChanged('reconnecting'));
    expect(s.connection).toMatchObject({ connected: false, reconnecting: true, joinedRooms: [CHAT_ID] });
  });

  it('a refused join leaves the room list and records the refusal', () => {
    const s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), roomJoined(CHAT_ID), chatRefused({ chatId: CHAT_ID, code: 'not_enrolled' }));
    expect(s.connection.joinedRooms).toEqual([]);
    expect(s.refusals[CHAT_ID].course?.title).toBe('Rust for Beginners');
  });

  it('resets everything when the session ends', () => {
    const s = run(STUDENT, fetchChats.fulfilled([chat()], 'r'), chatOpened(CHAT_ID), sessionExpired());
    expect(s.activeChatId).toBeNull();
    expect(s.chats.ids).toEqual([]);
    expect(s.meId).toBeNull();
  });
});

describe('starting a chat', () => {
  const course = { id: 'course-1', title: 'Rust for Beginners' };
  const args = { participantId: TUTOR.id, courseId: course.id, course };

  it('opens the created (or existing) chat', () => {
    const s = run(STUDENT, startChat.fulfilled(chat(), 'r', args));
    expect(s.activeChatId).toBe(CHAT_ID);
    expect(s.chats.ids).toEqual([CHAT_ID]);
  });

  it('shows the upgrade prompt for not_enrolled, naming the course', () => {
    const s = run(STUDENT, startChat.rejected(null, 'r', args, { code: 'not_enrolled' }));
    expect(s.startRefusal).toMatchObject({ code: 'not_enrolled', course });
    expect(s.error).toBeNull();
  });

  it('reports other failures as readable errors', () => {
    const s = run(STUDENT, startChat.rejected(null, 'r', args, { code: 'unavailable' }));
    expect(s.error).toMatch(/temporarily unavailable/);
  });

  it('upserting the same chat twice keeps one entry', () => {
    const s = run(STUDENT, chatUpserted(chat()), chatUpserted(chat()));
    expect(s.chats.ids).toEqual([CHAT_ID]);
  });
});
