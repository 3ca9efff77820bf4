// Who may do what, from the client's point of view. The server is authoritative for every
// rule (enrollment, tutorIds, blocks); these helpers only decide what the UI offers.

import type { Chat, Contact, Participant, Role } from './types';

/** The contract calls students `user`. */
export function isStudent(role: Role | undefined): boolean {
  return role === 'user';
}

export function isTutor(role: Role | undefined): boolean {
  return role === 'tutor';
}

/** Which list of people the user can start chats with, if any. */
export function contactKind(role: Role | undefined): 'tutors' | 'students' | null {
  if (isStudent(role)) return 'tutors';
  if (isTutor(role)) return 'students';
  return null;
}

/** The other participant of a chat (the tutor for a student, the student for a tutor). */
export function counterpart(chat: Pick<Chat, 'participants'>, meId: string): Participant | undefined {
  return chat.participants.find((p) => p.id !== meId) ?? chat.participants[0];
}

/** The existing chat with this person about this course, if there is one (at most one exists). */
export function findChatWith(
  chats: readonly Chat[],
  meId: string,
  participantId: string,
  courseId: string,
): Chat | undefined {
  return chats.find(
    (c) =>
      c.course.id === courseId &&
      c.participants.some((p) => p.id === participantId) &&
      c.participants.some((p) => p.id === meId),
  );
}

/** A chat the server refused (e.g. `not_enrolled`) stays readable but cannot be written to. */
export function canSend(
  chat: Pick<Chat, 'id'> | undefined,
  refusal: { code: string } | undefined,
): boolean {
  return Boolean(chat) && !refusal;
}

/** Error codes after which the chat must not be used until something changes server-side. */
export function isChatRefusal(code: string): boolean {
  return code === 'not_enrolled' || code === 'not_tutor' || code === 'blocked' || code === 'forbidden';
}

/** One entry per (person, course): the things a "start chat" button can point at. */
export function contactCourses(contacts: readonly Contact[]): { contact: Contact; course: Contact['courses'][number] }[] {
  return contacts.flatMap((contact) => contact.courses.map((course) => ({ contact, course })));
}

/** Role in plain words for labels. */
export function roleLabel(role: Role | undefined): string {
  if (role === 'user') return 'Student';
  if (role === 'tutor') return 'Tutor';
  if (role === 'admin') return 'Admin';
  return '';
}
