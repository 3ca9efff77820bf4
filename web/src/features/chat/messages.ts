// Pure message helpers: content validation, ordering and dedup, day separators, read receipts
// and unread counting. No store, no socket, no clock except the `now` passed in, so every rule
// here is unit-tested on plain values.

import type { Message, PendingMessage } from './types';

/** The contract's default content limit, in Unicode code points after trimming. */
export const MAX_CONTENT_CODE_POINTS = 4000;

// Control characters other than \n and \t are refused by the server; checking them here
// turns a round trip and an `invalid_payload` into an immediate, readable hint.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F]/;

export type ContentCheck =
  | { ok: true; content: string }
  | { ok: false; reason: 'empty' | 'too_long' | 'control_character' };

/** Checks a draft the way the server will; on success returns the trimmed text to send. */
export function checkContent(draft: string, limit = MAX_CONTENT_CODE_POINTS): ContentCheck {
  const content = draft.trim();
  if (content.length === 0) return { ok: false, reason: 'empty' };
  if (FORBIDDEN_CONTROL.test(content)) return { ok: false, reason: 'control_character' };
  if (codePointLength(content) > limit) return { ok: false, reason: 'too_long' };
  return { ok: true, content };
}

export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Highest seq among messages, 0 when there are none (seq starts at 1). */
export function maxSeq(messages: readonly Pick<Message, 'seq'>[]): number {
  let max = 0;
  for (const m of messages) if (m.seq > max) max = m.seq;
  return max;
}

/**
 * Merges messages into an ascending, (chatId, seq)-unique list. Later copies of the same seq
 * win, so a message re-delivered from history carries its freshly signed attachment url.
 */
export function mergeBySeq(existing: readonly Message[], incoming: readonly Message[]): Message[] {
  const bySeq = new Map<string, Message>();
  for (const m of existing) bySeq.set(`${m.chatId}:${m.seq}`, m);
  for (const m of incoming) bySeq.set(`${m.chatId}:${m.seq}`, m);
  return [...bySeq.values()].sort((a, b) =>
    a.chatId === b.chatId ? a.seq - b.seq : a.chatId < b.chatId ? -1 : 1,
  );
}

/**
 * The read cursor of the other participant as far as this client can tell: the highest of the
 * seqs announced by `message_read`, and the seq of their own latest message (sending moves the
 * sender's cursor silently, so they have necessarily seen everything before it).
 */
export function otherReadSeq(
  messages: readonly Pick<Message, 'seq' | 'senderId'>[],
  meId: string,
  announced: number,
): number {
  let seq = announced;
  for (const m of messages) if (m.senderId !== meId && m.seq > seq) seq = m.seq;
  return seq;
}

/**
 * The seq of my last own message when the other side has read it ("Seen" goes under it),
 * otherwise null. Only the last own message carries the receipt.
 */
export function seenSeq(
  messages: readonly Pick<Message, 'seq' | 'senderId'>[],
  meId: string,
  otherRead: number,
): number | null {
  let lastOwn = 0;
  for (const m of messages) if (m.senderId === meId && m.seq > lastOwn) lastOwn = m.seq;
  return lastOwn > 0 && otherRead >= lastOwn ? lastOwn : null;
}

/**
 * Unread count after my read cursor moved to `readSeq`. Exact when the messages after the
 * cursor are loaded; otherwise bounded by the server's count and by the seq gap (every seq
 * after the cursor is at most one unread message).
 */
export function unreadAfter(
  messages: readonly Pick<Message, 'seq' | 'senderId'>[],
  meId: string,
  readSeq: number,
  lastSeq: number,
  previousUnread: number,
): number {
  if (readSeq >= lastSeq) return 0;
  const loaded = new Set(messages.map((m) => m.seq));
  let complete = true;
  for (let s = readSeq + 1; s <= lastSeq; s++) {
    if (!loaded.has(s)) {
      complete = false;
      break;
    }
  }
  if (complete) {
    return messages.filter((m) => m.seq > readSeq && m.senderId !== meId).length;
  }
  return Math.max(0, Math.min(previousUnread, lastSeq - readSeq));
}

/** Local calendar day of an RFC 3339 time, as YYYY-MM-DD, the key for day separators. */
export function dayKey(iso: string): string {
  const d = new Date(iso);
  const y = d.getFullYear();
  const m = String(d.getMonth() + 1).padStart(2, '0');
  const day = String(d.getDate()).padStart(2, '0');
  return `${y}-${m}-${day}`;
}

/** "Today", "Yesterday" or a readable date, for a day separator. */
export function dayLabel(iso: string, now: Date): string {
  const key = dayKey(iso);
  if (key === dayKey(now.toISOString())) return 'Today';
  const yesterday = new Date(now);
  yesterday.setDate(yesterday.getDate() - 1);
  if (key === dayKey(yesterday.toISOString())) return 'Yesterday';
  const d = new Date(iso);
  const sameYear = d.getFullYear() === now.getFullYear();
  return d.toLocaleDateString(undefined, {
    weekday: sameYear ? 'long' : undefined,
    day: 'numeric',
    month: 'long',
    year: sameYear ? undefined : 'numeric',
  });
}

/** Short clock time of a message. */
export function timeLabel(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

export type TimelineItem =
  | { kind: 'day'; key: string; label: string }
  | { kind: 'message'; key: string; message: Message; seen: boolean }
  | { kind: 'pending'; key: string; pending: PendingMessage };

/**
 * The rows of a message view: confirmed messages in seq order, then this client's unacked
 * sends, with a day separator before the first row of each local day.
 */
export function buildTimeline(
  messages: readonly Message[],
  pending: readonly PendingMessage[],
  seen: number | null,
  now: Date,
): TimelineItem[] {
  const items: TimelineItem[] = [];
  let lastDay: string | null = null;
  const addDay = (iso: string) => {
    const key = dayKey(iso);
    if (key !== lastDay) {
      items.push({ kind: 'day', key: `day-${key}`, label: dayLabel(iso, now) });
      lastDay = key;
    }
  };
  for (const message of messages) {
    addDay(message.createdAt);
    items.push({ kind: 'message', key: `m-${message.seq}`, message, seen: message.seq === seen });
  }
  for (const p of pending) {
    addDay(p.createdAt);
    items.push({ kind: 'pending', key: `p-${p.clientMsgId}`, pending: p });
  }
  return items;
}

/** One line of preview for the chat list. */
export function previewText(message: Pick<Message, 'content' | 'type' | 'attachment'> | null): string {
  if (!message) return 'No messages yet';
  const text = message.content.replace(/\s+/g, ' ').trim();
  if (text) return text.length > 80 ? `${text.slice(0, 79)}…` : text;
  if (message.attachment) return message.type === 'image' ? 'Photo' : `File: ${message.attachment.name}`;
  return '';
}
