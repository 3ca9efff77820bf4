import { describe, expect, it } from 'vitest';
import { STUDENT, TUTOR, message } from '../../test/fixtures';
import {
  buildTimeline,
  checkContent,
  dayLabel,
  maxSeq,
  mergeBySeq,
  otherReadSeq,
  previewText,
  seenSeq,
  unreadAfter,
} from './messages';

describe('checkContent', () => {
  it('trims and accepts ordinary text, newlines and tabs', () => {
    expect(checkContent('  hello\n\tworld  ')).toEqual({ ok: true, content: 'hello\n\tworld' });
  });
  it('refuses empty or whitespace-only drafts', () => {
    expect(checkContent('   \n ')).toEqual({ ok: false, reason: 'empty' });
  });
  it('refuses control characters other than newline and tab', () => {
    expect(checkContent('bell\u0007')).toEqual({ ok: false, reason: 'control_character' });
    expect(checkContent('nul\u0000x')).toEqual({ ok: false, reason: 'control_character' });
  });
  it('counts Unicode code points, not UTF-16 units, against the limit', () => {
    const emoji = '😀'.repeat(4000); // 8000 UTF-16 units, 4000 code points
    expect(checkContent(emoji).ok).toBe(true);
    expect(checkContent(emoji + '😀')).toEqual({ ok: false, reason: 'too_long' });
    expect(checkContent('x'.repeat(11), 10)).toEqual({ ok: false, reason: 'too_long' });
  });
});

describe('mergeBySeq', () => {
  it('deduplicates by (chatId, seq), keeps ascending order and prefers the later copy', () => {
    const a = [message(1), message(3)];
    const b = [message(2), message(3, { content: 'fresh url' })];
    const merged = mergeBySeq(a, b);
    expect(merged.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(merged[2].content).toBe('fresh url');
  });
  it('keeps equal seqs of different chats apart', () => {
    const merged = mergeBySeq([message(1)], [message(1, { chatId: 'other' })]);
    expect(merged).toHaveLength(2);
  });
  it('maxSeq is 0 for nothing', () => {
    expect(maxSeq([])).toBe(0);
    expect(maxSeq([message(4), message(2)])).toBe(4);
  });
});

describe('read receipts', () => {
  const msgs = [
    message(1, { senderId: STUDENT.id }),
    message(2, { senderId: TUTOR.id }),
    message(3, { senderId: STUDENT.id }),
    message(4, { senderId: STUDENT.id }),
  ];
  it('puts "Seen" under my last own message only when the other cursor covers it', () => {
    expect(seenSeq(msgs, STUDENT.id, 3)).toBeNull();
    expect(seenSeq(msgs, STUDENT.id, 4)).toBe(4);
    expect(seenSeq(msgs, STUDENT.id, 9)).toBe(4);
  });
  it('has no receipt without own messages', () => {
    expect(seenSeq([message(1)], STUDENT.id, 5)).toBeNull();
  });
  it("infers the other side's cursor from their own latest message", () => {
    expect(otherReadSeq(msgs, STUDENT.id, 0)).toBe(2);
    expect(otherReadSeq(msgs, STUDENT.id, 4)).toBe(4);
    const replied = [...msgs, message(5, { senderId: TUTOR.id })];
    expect(seenSeq(replied, STUDENT.id, otherReadSeq(replied, STUDENT.id, 0))).toBe(4);
  });
});

describe('unreadAfter', () => {
  const msgs = [
    message(1, { senderId: TUTOR.id }),
    message(2, { senderId: STUDENT.id }),
    message(3, { senderId: TUTOR.id }),
    message(4, { senderId: TUTOR.id }),
  ];
  it('is zero once the cursor reaches the last seq', () => {
    expect(unreadAfter(msgs, STUDENT.id, 4, 4, 3)).toBe(0);
  });
  it("counts only the other side's messages after the cursor when they are loaded", () => {
    expect(unreadAfter(msgs, STUDENT.id, 1, 4, 3)).toBe(2);
    expect(unreadAfter(msgs, STUDENT.id, 3, 4, 3)).toBe(1);
  });
  it('falls back to a bound when messages after the cursor are not loaded', () => {
    expect(unreadAfter([], STUDENT.id, 7, 10, 5)).toBe(3);
    expect(unreadAfter([], STUDENT.id, 2, 10, 5)).toBe(5);
  });
});

describe('timeline', () => {
  const now = new Date('2025-01-10T15:00:00.000Z');
  it('labels today, yesterday and older days', () => {
    expect(dayLabel('2025-01-10T01:00:00.000Z', now)).toBe('Today');
    expect(dayLabel('2025-01-09T23:00:00.000Z', now)).toBe('Yesterday');
    expect(dayLabel('2025-01-02T10:00:00.000Z', now)).not.toMatch(/Today|Yesterday/);
  });
  it('inserts a separator before the first message of each day, pending sends last', () => {
    const items = buildTimeline(
      [
        message(1, { createdAt: '2025-01-09T10:00:00.000Z' }),
        message(2, { createdAt: '2025-01-09T11:00:00.000Z' }),
        message(3, { createdAt: '2025-01-10T09:00:00.000Z', senderId: STUDENT.id }),
      ],
      [
        {
          clientMsgId: 'p1',
          chatId: 'c',
          senderId: STUDENT.id,
          content: 'hi',
          createdAt: '2025-01-10T14:00:00.000Z',
          status: 'sending',
        },
      ],
      3,
      now,
    );
    expect(items.map((i) => i.kind)).toEqual(['day', 'message', 'message', 'day', 'message', 'pending']);
    expect(items[0]).toMatchObject({ label: 'Yesterday' });
    expect(items[3]).toMatchObject({ label: 'Today' });
    expect(items[4]).toMatchObject({ seen: true });
    expect(items[1]).toMatchObject({ seen: false });
  });
});

describe('previewText', () => {
  it('collapses whitespace and truncates', () => {
    expect(previewText(message(1, { content: 'a\n\n b' }))).toBe('a b');
    expect(previewText(message(1, { content: 'x'.repeat(200) })).length).toBe(80);
    expect(previewText(null)).toBe('No messages yet');
  });
});
