import { describe, expect, it } from 'vitest';
import { CHAT_ID, STUDENT, TUTOR, chat } from '../../test/fixtures';
import {
  canSend,
  contactCourses,
  contactKind,
  counterpart,
  findChatWith,
  isChatRefusal,
  isStudent,
  roleLabel,
} from './permissions';
import { readableError } from './errors';

describe('permissions', () => {
  it('treats role "user" as a student who picks from tutors, and tutors pick from students', () => {
    expect(isStudent('user')).toBe(true);
    expect(contactKind('user')).toBe('tutors');
    expect(contactKind('tutor')).toBe('students');
    expect(contactKind('admin')).toBeNull();
    expect(roleLabel('user')).toBe('Student');
  });

  it('finds the other participant of a chat', () => {
    expect(counterpart(chat(), STUDENT.id)?.id).toBe(TUTOR.id);
    expect(counterpart(chat(), TUTOR.id)?.id).toBe(STUDENT.id);
  });

  it('finds the one chat per (person, course)', () => {
    const chats = [chat(), chat({ id: 'x', course: { id: 'course-2', title: 'Go' } })];
    expect(findChatWith(chats, STUDENT.id, TUTOR.id, 'course-1')?.id).toBe(CHAT_ID);
    expect(findChatWith(chats, STUDENT.id, TUTOR.id, 'course-2')?.id).toBe('x');
    expect(findChatWith(chats, STUDENT.id, TUTOR.id, 'course-3')).toBeUndefined();
  });

  it('refuses sending in a refused chat', () => {
    expect(canSend(chat(), undefined)).toBe(true);
    expect(canSend(chat(), { code: 'not_enrolled' })).toBe(false);
    expect(canSend(undefined, undefined)).toBe(false);
    expect(isChatRefusal('not_enrolled')).toBe(true);
    expect(isChatRefusal('rate_limited')).toBe(false);
  });

  it('lists one start-chat entry per (person, course)', () => {
    const entries = contactCourses([
      { id: 't', name: 'T', online: true, courses: [{ id: 'a', title: 'A' }, { id: 'b', title: 'B' }] },
    ]);
    expect(entries.map((e) => e.course.id)).toEqual(['a', 'b']);
  });
});

describe('readableError', () => {
  it('never shows a raw code', () => {
    for (const code of ['not_enrolled', 'rate_limited', 'too_large', 'whatever', undefined]) {
      const text = readableError(code);
      expect(text).not.toMatch(/_/);
      expect(text.length).toBeGreaterThan(10);
    }
  });
});
