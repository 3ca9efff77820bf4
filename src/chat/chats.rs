//! Chats: creating one (one per student, tutor and course), the caller's list, and the view a
//! caller gets of a chat (course, participants with presence and read cursors, last message,
//! unread count), which counts the messages still in the write-behind queue.

use std::collections::HashMap;

use crate::auth::Caller;
use crate::engine::Window;
use crate::model::ids::{is_valid_user_id, new_object_id};
use crate::model::{Chat, Course, Message, Role, Timestamp};

use super::checks::participants;
use super::views::{ChatView, CourseRef, Participant};
use super::{ChatError, ChatResult, ChatService};

impl ChatService {
    pub async fn create_chat(
        &self,
        caller: &Caller,
        participant_id: &str,
        course_id: &str,
    ) -> ChatResult<(ChatView, bool)> {
        if !is_valid_user_id(participant_id) || !is_valid_user_id(course_id) {
            return Err(ChatError::InvalidPayload("participantId and courseId must be valid ids".into()));
        }
        if participant_id == caller.user_id {
            return Err(ChatError::InvalidPayload("a chat needs another participant".into()));
        }
        let (student, tutor) = match caller.role {
            Role::User => (caller.user_id.as_str(), participant_id),
            Role::Tutor => (participant_id, caller.user_id.as_str()),
            Role::Admin => return Err(ChatError::Forbidden("admins do not take part in chats".into())),
        };
        self.check_access(student, tutor, course_id).await?;
        let now = Timestamp::now();
        let chat = Chat {
            id: new_object_id(),
            course_id: course_id.to_owned(),
            student_id: student.to_owned(),
            tutor_id: tutor.to_owned(),
            created_at: now,
            updated_at: now,
            last_message: None,
            last_seq: 0,
        };
        let creation = self.store.create_chat(&chat).await?;
        let view = self.view(&caller.user_id, creation.chat, &mut HashMap::new()).await?;
        Ok((view, creation.created))
    }

    /// The caller's chats, most recent first.
    pub async fn list_chats(&self, caller: &Caller) -> ChatResult<Vec<ChatView>> {
        // Each chat's queued messages are read before the chat records they are merged with (as
        // history::read does): a message the writer moves from the queue to the store in
        // between is then seen in one of the two.
        let mut queued = HashMap::new();
        for chat in self.store.chats_by_user(&caller.user_id).await? {
            let pending = self.queued_since_read(&chat.id).await?;
            queued.insert(chat.id, pending);
        }
        let chats = self.store.chats_by_user(&caller.user_id).await?;
        let mut courses = HashMap::new();
        let mut views = Vec::with_capacity(chats.len());
        for chat in chats {
            let pending = match queued.remove(&chat.id) {
                Some(pending) => pending,
                None => self.queued_since_read(&chat.id).await?, // created in between
            };
            views.push(self.view_with(&caller.user_id, chat, pending, &mut courses).await?);
        }
        views.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| b.id.cmp(&a.id)));
        Ok(views)
    }

    pub(super) async fn view(
        &self,
        viewer: &str,
        chat: Chat,
        courses: &mut HashMap<String, CourseRef>,
    ) -> ChatResult<ChatView> {
        let pending = self.queued_since_read(&chat.id).await?;
        self.view_with(viewer, chat, pending, courses).await
    }

    /// The view of `chat` with the queued messages read for it.
    async fn view_with(
        &self,
        viewer: &str,
        chat: Chat,
        pending: Vec<Message>,
        courses: &mut HashMap<String, CourseRef>,
    ) -> ChatResult<ChatView> {
        let read_seq = self.effective_read_seq(&chat.id, viewer, &pending).await?;
        let (last_seq, updated_at, last_message) = match pending.last().cloned().filter(|m| m.seq > chat.last_seq) {
            Some(m) => (m.seq, m.created_at, Some(m)),
            None => (chat.last_seq, chat.updated_at, chat.last_message.clone()),
        };
        let course = match courses.get(&chat.course_id) {
            Some(c) => c.clone(),
            None => {
                let c = match self.store.course(&chat.course_id).await? {
                    Some(c) => course_ref(&c),
                    None => CourseRef { id: chat.course_id.clone(), title: chat.course_id.clone() },
                };
                courses.insert(chat.course_id.clone(), c.clone());
                c
            }
        };
        let ids = participants(&chat);
        let online = self.engine.presence.online(&ids).await?;
        let mut people = Vec::with_capacity(2);
        for (id, online) in ids.into_iter().zip(online) {
            let role = if id == chat.tutor_id { Role::Tutor } else { Role::User };
            let name = self.store.user(&id).await?.map_or_else(|| id.clone(), |u| u.name);
            let read_seq = self.effective_read_seq(&chat.id, &id, &pending).await?.min(last_seq);
            people.push(Participant { id, name, role, online, read_seq });
        }
        Ok(ChatView {
            id: chat.id,
            course,
            participants: people,
            last_message: last_message.map(|m| self.present(m)),
            last_seq,
            unread: last_seq.saturating_sub(read_seq),
            read_seq: read_seq.min(last_seq),
            created_at: chat.created_at,
            updated_at,
        })
    }

    /// What a reader that has just read the chat document adds to it: the log's queued messages,
    /// and the newest message of its recent window, since the writer may have moved that one from
    /// the queue to the store after the document was read, and then neither read would show it.
    pub(super) async fn queued_since_read(&self, chat_id: &str) -> ChatResult<Vec<Message>> {
        let mut queued = self.engine.log.pending(chat_id).await?;
        let newest = Window::Before { before: None, limit: 1 };
        if let Some(newest) = self.engine.log.recent(chat_id, newest).await?.and_then(|m| m.into_iter().last()) {
            if queued.last().is_none_or(|q| q.seq < newest.seq) {
                queued.push(newest);
            }
        }
        Ok(queued)
    }

    /// The caller's read cursor, counting their own queued messages (sending moves it).
    pub(super) async fn effective_read_seq(&self, chat_id: &str, user: &str, pending: &[Message]) -> ChatResult<u64> {
        let stored = self.store.read_cursor(chat_id, user).await?;
        let own = pending.iter().filter(|m| m.sender_id == user).map(|m| m.seq).max().unwrap_or(0);
        Ok(stored.max(own))
    }
}

pub(super) fn course_ref(course: &Course) -> CourseRef {
    CourseRef { id: course.id.clone(), title: course.title.clone() }
}
