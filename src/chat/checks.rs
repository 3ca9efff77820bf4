//! The checks every action shares: the caller takes part in the chat (else `not_found`, so a
//! chat's existence does not leak), the student holds the enrollment and the tutor teaches the
//! course.

use crate::auth::Caller;
use crate::model::ids::is_object_id;
use crate::model::Chat;

use super::{ChatError, ChatResult, ChatService};

impl ChatService {
    /// The chat, when the caller takes part in it; otherwise `not_found` (never `forbidden`, so
    /// a chat's existence does not leak).
    pub(super) async fn participant_chat(&self, caller: &Caller, chat_id: &str) -> ChatResult<Chat> {
        let chat = if is_object_id(chat_id) { self.store.chat(chat_id).await? } else { None };
        only_participant(chat, caller)
    }

    /// Like [`participant_chat`](Self::participant_chat) from the directory cache: only the
    /// participants and course are meant to be read (its last message may be old). The hot path
    /// (send, typing) uses this, so it keeps working while the store is down.
    pub(super) async fn participant_chat_cached(&self, caller: &Caller, chat_id: &str) -> ChatResult<Chat> {
        let chat = if is_object_id(chat_id) { self.engine.directory.chat(chat_id).await? } else { None };
        only_participant(chat, caller)
    }

    /// The student holds an enrollment in the course and the tutor is one of its tutors.
    pub(super) async fn check_access(&self, student: &str, tutor: &str, course_id: &str) -> ChatResult<()> {
        let course = self.engine.directory.course(course_id).await?;
        if !self.engine.directory.is_enrolled(student, course_id).await? {
            let title = course.map_or_else(|| course_id.to_owned(), |c| c.title);
            return Err(ChatError::NotEnrolled { course_id: course_id.to_owned(), title });
        }
        match course {
            Some(c) if c.tutor_ids.iter().any(|t| t == tutor) => Ok(()),
            _ => Err(ChatError::NotTutor(format!("{tutor} is not a tutor of the course {course_id}"))),
        }
    }
}

/// The chat, when the caller takes part in it; otherwise `not_found` (never `forbidden`, so a
/// chat's existence does not leak).
pub(super) fn only_participant(chat: Option<Chat>, caller: &Caller) -> ChatResult<Chat> {
    chat.filter(|c| c.is_participant(&caller.user_id)).ok_or(ChatError::NotFound("chat"))
}

pub(super) fn participants(chat: &Chat) -> Vec<String> {
    vec![chat.student_id.clone(), chat.tutor_id.clone()]
}
