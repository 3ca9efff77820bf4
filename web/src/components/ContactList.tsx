// The people the user can start a chat with: a student's tutors (of the courses they bought),
// a tutor's students. One button per (person, course), opening the existing chat or creating it.

import { useAppDispatch, useAppSelector } from '../app/hooks';
import {
  chatOpened,
  selectChatState,
  selectChats,
  selectMeId,
  selectOnlineUsers,
} from '../features/chat/chatSlice';
import { startChat } from '../features/chat/chatThunks';
import { contactCourses, contactKind, findChatWith } from '../features/chat/permissions';
import { selectMe } from '../features/session/sessionSlice';
import Avatar from './Avatar';

export default function ContactList() {
  const dispatch = useAppDispatch();
  const me = useAppSelector(selectMe);
  const meId = useAppSelector(selectMeId) ?? '';
  const chats = useAppSelector(selectChats);
  const online = useAppSelector(selectOnlineUsers);
  const { contacts, contactsLoaded, loading } = useAppSelector(selectChatState);
  const kind = contactKind(me?.role);
  if (!kind) return null;

  const title = kind === 'tutors' ? 'Your tutors' : 'Your students';
  const entries = contactCourses(contacts);

  return (
    <section className="contact-list" aria-labelledby="contact-list-title">
      <h2 id="contact-list-title" className="section-title">
        {title}
      </h2>
      {!contactsLoaded && loading.contacts && <p className="muted pad">Loading…</p>}
      {contactsLoaded && entries.length === 0 && (
        <div className="empty-state">
          {kind === 'tutors' ? (
            <>
              <p className="empty-title">You have no courses yet</p>
              <p className="muted small">
                When you buy a course, its tutors appear here and you can chat with them.
              </p>
            </>
          ) : (
            <>
              <p className="empty-title">No students yet</p>
              <p className="muted small">Students enrolled in your courses appear here.</p>
            </>
          )}
        </div>
      )}
      <ul className="plain-list">
        {entries.map(({ contact, course }) => {
          const existing = findChatWith(chats, meId, contact.id, course.id);
          const isOnline = Boolean(online[contact.id]);
          return (
            <li key={`${contact.id}:${course.id}`}>
              <button
                type="button"
                className="person-button"
                disabled={loading.startChat}
                onClick={() =>
                  existing
                    ? dispatch(chatOpened(existing.id))
                    : dispatch(startChat({ participantId: contact.id, courseId: course.id, course }))
                }
              >
                <Avatar name={contact.name} online={isOnline} />
                <span className="person-text">
                  <span className="person-name">{contact.name}</span>
                  <span className="sr-only">{isOnline ? ', online' : ', offline'}, </span>
                  <span className="muted small">{course.title}</span>
                </span>
                <span className="action-hint">{existing ? 'Open chat' : 'Start chat'}</span>
              </button>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
