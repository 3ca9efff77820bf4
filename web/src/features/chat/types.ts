// Wire types: the shapes of /work/shared/CONTRACT.md, named with the contract's words.
// Nothing here is invented by the client except PendingMessage, the optimistic copy of a send.

export type Role = 'user' | 'tutor' | 'admin';

export interface CourseRef {
  id: string;
  title: string;
}

export interface Attachment {
  id: string;
  name: string;
  size: number;
  mime: string;
  url: string;
}

export interface Message {
  id: string;
  chatId: string;
  seq: number;
  senderId: string;
  senderType: 'user' | 'tutor';
  type: 'text' | 'image' | 'file';
  content: string;
  attachment?: Attachment;
  clientMsgId: string;
  createdAt: string;
}

export interface Participant {
  id: string;
  name: string;
  role: Role;
  online: boolean;
  /** How far this participant has read (coursechat sends it; absent from older servers). */
  readSeq?: number;
}

export interface Chat {
  id: string;
  course: CourseRef;
  participants: Participant[];
  lastMessage: Message | null;
  lastSeq: number;
  unread: number;
  /** The caller's own read cursor. */
  readSeq: number;
  createdAt: string;
  updatedAt: string;
}

/** A tutor (for a student) or a student (for a tutor) the caller can start a chat with. */
export interface Contact {
  id: string;
  name: string;
  online: boolean;
  courses: CourseRef[];
}

export interface WireError {
  code: string;
  message: string;
  event?: string;
}

export type Ack<T> = ({ ok: true } & T) | { ok: false; error: WireError };

export interface JoinAck {
  chat: Chat;
  missed: Message[];
  hasMore: boolean;
}

export interface SendAck {
  message: Message;
}

export interface MessageReadEvent {
  chatId: string;
  userId: string;
  seq: number;
  readAt: string;
}

export interface TypingIndicatorEvent {
  chatId: string;
  userId: string;
  isTyping: boolean;
}

/**
 * A message this client sent (or is sending) that the server has not acked yet.
 * Keyed by clientMsgId so the ack, a retry or the same message seen in `missed` reconciles it.
 */
export interface PendingMessage {
  clientMsgId: string;
  chatId: string;
  senderId: string;
  content: string;
  createdAt: string;
  status: 'sending' | 'failed';
  /** Readable reason shown beside the retry button. */
  error?: string;
}
