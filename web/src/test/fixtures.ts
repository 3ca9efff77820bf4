// Builders for contract-shaped values in unit tests.

import type { Chat, Message } from '../features/chat/types';

export const STUDENT = { id: 'student-1', name: 'Sam Student', role: 'user' as const };
export const TUTOR = { id: 'tutor-1', name: 'Tara Tutor', role: 'tutor' as const };
export const CHAT_ID = 'aaaaaaaaaaaaaaaaaaaaaaaa';
export const OTHER_CHAT_ID = 'bbbbbbbbbbbbbbbbbbbbbbbb';

export function message(seq: number, over: Partial<Message> = {}): Message {
  const senderId = over.senderId ?? TUTOR.id;
  return {
    id: `${seq}`.padStart(24, '0'),
    chatId: CHAT_ID,
    seq,
    senderId,
    senderType: senderId === STUDENT.id ? 'user' : 'tutor',
    type: 'text',
    content: `message ${seq}`,
    clientMsgId: `c-${senderId}-${seq}`,
    createdAt: new Date(Date.UTC(2025, 0, 10, 12, 0, seq)).toISOString(),
    ...over,
  };
}

export function chat(over: Partial<Chat> = {}): Chat {
  return {
    id: CHAT_ID,
    course: { id: 'course-1', title: 'Rust for Beginners' },
    participants: [
      { ...STUDENT, online: true },
      { ...TUTOR, online: false },
    ],
    lastMessage: null,
    lastSeq: 0,
    unread: 0,
    readSeq: 0,
    createdAt: '2025-01-10T11:00:00.000Z',
    updatedAt: '2025-01-10T11:00:00.000Z',
    ...over,
  };
}
