//! The chat rules, one function per action, shared by the Socket.IO session and the REST API.
//!
//! Reads of a chat's messages combine the store with the engine's pending queue: the pending
//! queue is read first, then the store, so a message the writer moves from one to the other in
//! between is still seen (the writer releases a message only after the store has it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::content::{check_client_msg_id, check_content};
use super::views::{ChatView, Contact, CourseRef, MessagePage, Participant};
use super::{ChatError, ChatResult};
use crate::attachments::UrlSigner;
use crate::auth::Caller;
use crate::engine::{merge_by_seq, messages_after, AppendRequest, Engine, Invalidation, Notice, Window};
use crate::events::event_frame;
use crate::hub::{Delivery, SocketId, Target};
use crate::model::ids::{is_object_id, is_valid_user_id, new_object_id};
use crate::model::time::Timestamp;
use crate::model::{
    Attachment, Block, Chat, Course, Enrollment, Message, MessageType, Role, SenderType, StoredAttachment, User,
};
use crate::store::Store;

/// The limits the rules enforce (CONTRACT "Limits"; all configurable).
#[derive(Debug, Clone)]
pub struct ChatLimits {
    pub max_content_chars: usize,
    pub max_missed: usize,
    pub max_page: usize,
    pub max_attachment_bytes: usize,
    /// Attachment types allowed, as sniffed from the bytes.
    pub attachment_types: Vec<String>,
}

impl Default for ChatLimits {
    fn default() -> Self {
        ChatLimits {
            max_content_chars: 4000,
            max_missed: 500,
            max_page: 100,
            max_attachment_bytes: 10 * 1024 * 1024,
            attachment_types: crate::attachments::DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }
}

pub struct ChatService {
    store: Arc<dyn Store>,
    engine: Engine,
    limits: ChatLimits,
    /// Signs attachment urls whenever a message is shown.
    signer: Arc<UrlSigner>,
}

/// What `join_chat` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub chat: ChatView,
    pub missed: Vec<Message>,
    pub has_more: bool,
}

/// A message to send, as the client gave it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub chat_id: String,
    pub client_msg_id: String,
    pub content: String,
    pub kind: MessageType,
    pub attachment_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageRead<'a> {
    chat_id: &'a str,
    user_id: &'a str,
    seq: u64,
    read_at: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TypingIndicator<'a> {
    chat_id: &'a str,
    user_id: &'a str,
    is_typing: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserOnline<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserOffline<'a> {
    user_id: &'a str,
    last_seen: Timestamp,
}

impl ChatService {
    pub fn new(store: Arc<dyn Store>, engine: Engine, limits: ChatLimits, signer: Arc<UrlSigner>) -> Self {
        ChatService { store, engine, limits, signer }
    }

    pub fn limits(&self) -> &ChatLimits {
        &self.limits
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// A message as a client sees it: its attachment carries a freshly signed url.
    pub fn present(&self, mut message: Message) -> Message {
        if let Some(a) = message.attachment.as_mut() {
            a.url = self.signer.url(&a.id);
        }
        message
    }

    // ---- attachments ------------------------------------------------------------------------

    /// The checks before an upload's body is read: the caller may send in this chat.
    pub async fn check_upload(&self, caller: &Caller, chat_id: &str) -> ChatResult<Chat> {
        let chat = self.participant_chat_cached(caller, chat_id).await?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id).await?;
        Ok(chat)
    }

    /// Stores an uploaded attachment after checking its type on the bytes.
    pub async fn store_attachment(
        &self,
        caller: &Caller,
        chat: &Chat,
        name: &str,
        bytes: Vec<u8>,
    ) -> ChatResult<Attachment> {
        if bytes.is_empty() {
            return Err(ChatError::InvalidPayload("the attachment is empty".into()));
        }
        if bytes.len() > self.limits.max_attachment_bytes {
            return Err(ChatError::TooLarge(format!(
                "attachments are at most {} bytes",
                self.limits.max_attachment_bytes
            )));
        }
        let mime = match crate::attachments::sniff(&bytes) {
            Some(m) if self.limits.attachment_types.iter().any(|t| t == m) => m,
            Some(m) => return Err(ChatError::UnsupportedType(format!("{m} is not an allowed attachment type"))),
            None => {
                return Err(ChatError::UnsupportedType("the attachment's type could not be told from its bytes".into()))
            }
        };
        let stored = StoredAttachment {
            id: new_object_id(),
            chat_id: chat.id.clone(),
            uploader_id: caller.user_id.clone(),
            name: clean_file_name(name),
            size: bytes.len() as u64,
            mime: mime.to_owned(),
            created_at: Timestamp::now(),
        };
        self.store.put_attachment(&stored, bytes).await?;
        Ok(Attachment {
            url: self.signer.url(&stored.id),
            id: stored.id,
            name: stored.name,
            size: stored.size,
            mime: stored.mime,
        })
    }

    /// An attachment's record and bytes for a download: by a signed url (`signed` true), or by a
    /// caller who takes part in its chat. `None` (404) otherwise.
    pub async fn attachment_for(
        &self,
        id: &str,
        caller: Option<&Caller>,
    ) -> ChatResult<Option<(StoredAttachment, Vec<u8>)>> {
        if !is_object_id(id) {
            return Ok(None);
        }
        let Some(record) = self.store.attachment(id).await? else { return Ok(None) };
        if let Some(caller) = caller {
            let chat = self.store.chat(&record.chat_id).await?;
            if !chat.is_some_and(|c| c.is_participant(&caller.user_id)) {
                return Ok(None);
            }
        }
        Ok(self.store.attachment_bytes(id).await?.map(|bytes| (record, bytes)))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Records the caller as the token describes them: the token is authoritative for id and
    /// role, and its `name`, when given, updates the user record.
    pub async fn sign_in(&self, caller: &Caller) -> ChatResult<()> {
        let existing = self.store.user(&caller.user_id).await?;
        let name = caller
            .name
            .clone()
            .or_else(|| existing.as_ref().map(|u| u.name.clone()))
            .unwrap_or_else(|| caller.user_id.clone());
        let wanted = User { id: caller.user_id.clone(), name, role: caller.role };
        if existing.as_ref() != Some(&wanted) {
            self.store.put_user(&wanted).await?;
        }
        Ok(())
    }

    // ---- chats -------------------------------------------------------------------------------

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
        let chats = self.store.chats_by_user(&caller.user_id).await?;
        let mut courses = HashMap::new();
        let mut views = Vec::with_capacity(chats.len());
        for chat in chats {
            views.push(self.view(&caller.user_id, chat, &mut courses).await?);
        }
        views.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| b.id.cmp(&a.id)));
        Ok(views)
    }

    /// A page of history: the newest `limit` messages with seq < `before`, ascending.
    pub async fn history(
        &self,
        caller: &Caller,
        chat_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> ChatResult<MessagePage> {
        if limit == 0 || limit > self.limits.max_page {
            return Err(ChatError::InvalidPayload(format!("limit must be 1..{}", self.limits.max_page)));
        }
        let chat = self.participant_chat(caller, chat_id).await?;
        let window = Window::Before { before, limit: limit + 1 };
        let mut all = match self.engine.log.recent(&chat.id, window).await? {
            Some(recent) => recent,
            None => {
                let pending = self.engine.log.pending(&chat.id).await?;
                let stored = self.store.messages_before(&chat.id, before, limit + 1).await?;
                let bound = before.unwrap_or(u64::MAX);
                merge_by_seq(stored, pending.into_iter().filter(|m| m.seq < bound))
            }
        };
        let has_more = all.len() > limit;
        if has_more {
            all.drain(..all.len() - limit);
        }
        let messages = all.into_iter().map(|m| self.present(m)).collect();
        Ok(MessagePage { messages, has_more })
    }

    /// `join_chat`: the checks of a send, then the chat and what the caller missed after
    /// `last_seq`. The session puts the socket into the room.
    pub async fn join(&self, caller: &Caller, chat_id: &str, last_seq: Option<u64>) -> ChatResult<Joined> {
        let chat = self.participant_chat(caller, chat_id).await?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id).await?;
        let (missed, has_more) = match last_seq {
            None => (Vec::new(), false),
            Some(after) => self.messages_after(&chat.id, after, self.limits.max_missed).await?,
        };
        let view = self.view(&caller.user_id, chat, &mut HashMap::new()).await?;
        let missed = missed.into_iter().map(|m| self.present(m)).collect();
        Ok(Joined { chat: view, missed, has_more })
    }

    async fn messages_after(&self, chat_id: &str, after: u64, limit: usize) -> ChatResult<(Vec<Message>, bool)> {
        let mut all: Vec<Message> =
            messages_after::<ChatError>(self.engine.log.as_ref(), self.store.as_ref(), chat_id, after, limit + 1)
                .await?;
        let has_more = all.len() > limit;
        all.truncate(limit);
        Ok((all, has_more))
    }

    /// `send_message`: every check, then the one append call. Returns once durable.
    pub async fn send(&self, caller: &Caller, draft: Draft, origin: Option<SocketId>) -> ChatResult<Message> {
        check_client_msg_id(&draft.client_msg_id)?;
        let has_attachment = draft.attachment_id.is_some();
        match (draft.kind, has_attachment) {
            (MessageType::Text, false) | (MessageType::Image | MessageType::File, true) => {}
            (MessageType::Text, true) => {
                return Err(ChatError::InvalidPayload("a message with an attachmentId has type image or file".into()))
            }
            (_, false) => return Err(ChatError::InvalidPayload("image and file messages need an attachmentId".into())),
        }
        check_content(&draft.content, self.limits.max_content_chars, has_attachment)?;
        if let Err(retry) = self.engine.message_limiter.check(&caller.user_id).await? {
            return Err(ChatError::RateLimited(retry));
        }
        let chat = self.participant_chat_cached(caller, &draft.chat_id).await?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id).await?;
        let other = chat.other(&caller.user_id);
        if self.engine.directory.is_blocked(other, &caller.user_id).await? {
            return Err(ChatError::Blocked);
        }
        let attachment = match &draft.attachment_id {
            Some(id) => Some(self.own_attachment(caller, &chat, id, draft.kind).await?),
            None => None,
        };
        let sender_type = if caller.user_id == chat.tutor_id { SenderType::Tutor } else { SenderType::User };
        let appended = self
            .engine
            .log
            .append(AppendRequest {
                chat_id: chat.id.clone(),
                sender_id: caller.user_id.clone(),
                sender_type,
                kind: draft.kind,
                content: draft.content,
                attachment,
                client_msg_id: draft.client_msg_id,
                recipients: vec![chat.student_id.clone(), chat.tutor_id.clone()],
                origin,
            })
            .await?;
        Ok(self.present(appended.message))
    }

    /// The attachment a message may carry: uploaded to this chat by this sender. Stored without
    /// a url; urls are signed when the message is shown.
    async fn own_attachment(
        &self,
        caller: &Caller,
        chat: &Chat,
        id: &str,
        kind: MessageType,
    ) -> ChatResult<Attachment> {
        let stored = if is_object_id(id) { self.store.attachment(id).await? } else { None };
        let stored = stored.filter(|a| a.chat_id == chat.id && a.uploader_id == caller.user_id).ok_or_else(|| {
            ChatError::InvalidPayload("attachmentId must name an attachment you uploaded to this chat".into())
        })?;
        if kind == MessageType::Image && !crate::attachments::is_image(&stored.mime) {
            return Err(ChatError::InvalidPayload(format!("an image message needs an image, not {}", stored.mime)));
        }
        Ok(Attachment { id: stored.id, name: stored.name, size: stored.size, mime: stored.mime, url: String::new() })
    }

    /// `mark_read` and `PUT /read`: moves the caller's cursor forward (never back, never past the
    /// latest message) and tells every socket of both participants.
    pub async fn mark_read(&self, caller: &Caller, chat_id: &str, seq: Option<u64>) -> ChatResult<()> {
        let chat = self.participant_chat(caller, chat_id).await?;
        let pending = self.queued_since_read(&chat.id).await?;
        let last_seq = pending.last().map_or(0, |m| m.seq).max(chat.last_seq);
        let current = self.effective_read_seq(&chat.id, &caller.user_id, &pending).await?;
        let target = seq.unwrap_or(last_seq).min(last_seq);
        if target <= current {
            return Ok(());
        }
        let now = self.store.advance_read_cursor(&chat.id, &caller.user_id, target).await?;
        let event = MessageRead { chat_id: &chat.id, user_id: &caller.user_id, seq: now, read_at: Timestamp::now() };
        self.publish(Target::Users(participants(&chat)), None, event_frame("message_read", &event)).await
    }

    /// `typing_start` / `typing_stop`: announced to the chat's room on a change of state.
    pub async fn typing(&self, caller: &Caller, chat_id: &str, typing: bool, origin: SocketId) -> ChatResult<()> {
        let chat = self.participant_chat_cached(caller, chat_id).await?;
        let changed = if typing {
            self.engine.typing.start(&chat.id, &caller.user_id, origin).await?
        } else {
            self.engine.typing.stop(&chat.id, &caller.user_id).await?
        };
        if changed {
            self.announce_typing(&chat.id, &caller.user_id, typing, origin).await?;
        }
        Ok(())
    }

    async fn announce_typing(&self, chat_id: &str, user: &str, is_typing: bool, origin: SocketId) -> ChatResult<()> {
        let event = TypingIndicator { chat_id, user_id: user, is_typing };
        self.publish(Target::Room(chat_id.to_owned()), Some(origin), event_frame("typing_indicator", &event)).await
    }

    /// A socket of the caller opened: announce `user_online` when they just came online.
    pub async fn socket_opened(&self, caller: &Caller) -> ChatResult<()> {
        if self.engine.presence.connected(&caller.user_id).await? {
            let partners = self.partners(&caller.user_id).await?;
            if !partners.is_empty() {
                let frame = event_frame("user_online", &UserOnline { user_id: &caller.user_id });
                self.publish(Target::Users(partners), None, frame).await?;
            }
        }
        Ok(())
    }

    pub async fn socket_closed(&self, user: &str) -> ChatResult<()> {
        Ok(self.engine.presence.disconnected(user).await?)
    }

    /// Turns an engine timer's decision into the contract's event.
    pub async fn announce(&self, notice: Notice) -> ChatResult<()> {
        match notice {
            Notice::Offline { user, last_seen } => {
                let partners = self.partners(&user).await?;
                if !partners.is_empty() {
                    let frame = event_frame("user_offline", &UserOffline { user_id: &user, last_seen });
                    self.publish(Target::Users(partners), None, frame).await?;
                }
                Ok(())
            }
            Notice::TypingExpired { chat_id, user, origin } => {
                self.announce_typing(&chat_id, &user, false, origin).await
            }
        }
    }

    // ---- people ------------------------------------------------------------------------------

    /// The tutors of the courses the caller purchased.
    pub async fn available_tutors(&self, caller: &Caller) -> ChatResult<Vec<Contact>> {
        let mut by_tutor: BTreeMap<String, Vec<CourseRef>> = BTreeMap::new();
        for enrollment in self.store.enrollments_by_user(&caller.user_id).await? {
            if let Some(course) = self.store.course(&enrollment.course_id).await? {
                for tutor in &course.tutor_ids {
                    by_tutor.entry(tutor.clone()).or_default().push(course_ref(&course));
                }
            }
        }
        self.contacts(by_tutor).await
    }

    /// The students enrolled in the caller's courses.
    pub async fn students(&self, caller: &Caller) -> ChatResult<Vec<Contact>> {
        let mut by_student: BTreeMap<String, Vec<CourseRef>> = BTreeMap::new();
        for course in self.store.courses_by_tutor(&caller.user_id).await? {
            for enrollment in self.store.enrollments_by_course(&course.id).await? {
                by_student.entry(enrollment.user_id).or_default().push(course_ref(&course));
            }
        }
        self.contacts(by_student).await
    }

    async fn contacts(&self, people: BTreeMap<String, Vec<CourseRef>>) -> ChatResult<Vec<Contact>> {
        let ids: Vec<String> = people.keys().cloned().collect();
        let online = self.engine.presence.online(&ids).await?;
        let mut out = Vec::with_capacity(ids.len());
        for ((id, courses), online) in people.into_iter().zip(online) {
            let name = self.store.user(&id).await?.map_or_else(|| id.clone(), |u| u.name);
            out.push(Contact { id, name, online, courses });
        }
        Ok(out)
    }

    // ---- blocks ------------------------------------------------------------------------------

    pub async fn block(&self, caller: &Caller, user_id: &str) -> ChatResult<(Block, bool)> {
        if !is_valid_user_id(user_id) {
            return Err(ChatError::InvalidPayload("userId must be a valid user id".into()));
        }
        if user_id == caller.user_id {
            return Err(ChatError::InvalidPayload("you cannot block yourself".into()));
        }
        let block = self.store.put_block(&caller.user_id, user_id, Timestamp::now()).await?;
        let change = Invalidation::Block { blocker: caller.user_id.clone(), blocked: user_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(block)
    }

    pub async fn unblock(&self, caller: &Caller, user_id: &str) -> ChatResult<()> {
        self.store.delete_block(&caller.user_id, user_id).await?;
        let change = Invalidation::Block { blocker: caller.user_id.clone(), blocked: user_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(())
    }

    pub async fn blocks(&self, caller: &Caller) -> ChatResult<Vec<Block>> {
        Ok(self.store.blocks(&caller.user_id).await?)
    }

    // ---- admin -------------------------------------------------------------------------------

    fn require_admin(caller: &Caller) -> ChatResult<()> {
        if caller.role != Role::Admin {
            return Err(ChatError::Forbidden("the admin API needs an admin token".into()));
        }
        Ok(())
    }

    pub async fn admin_put_user(&self, caller: &Caller, user: User) -> ChatResult<User> {
        Self::require_admin(caller)?;
        if !is_valid_user_id(&user.id) {
            return Err(ChatError::InvalidPayload("invalid user id".into()));
        }
        check_name(&user.name)?;
        self.store.put_user(&user).await?;
        Ok(user)
    }

    pub async fn admin_put_course(&self, caller: &Caller, course: Course) -> ChatResult<Course> {
        Self::require_admin(caller)?;
        if !is_valid_user_id(&course.id) {
            return Err(ChatError::InvalidPayload("invalid course id".into()));
        }
        check_name(&course.title)?;
        if let Some(bad) = course.tutor_ids.iter().find(|t| !is_valid_user_id(t)) {
            return Err(ChatError::InvalidPayload(format!("invalid tutor id {bad:?}")));
        }
        self.store.put_course(&course).await?;
        self.engine.directory.invalidate(Invalidation::Course(course.id.clone())).await?;
        Ok(course)
    }

    pub async fn admin_put_enrollment(
        &self,
        caller: &Caller,
        user_id: &str,
        course_id: &str,
    ) -> ChatResult<Enrollment> {
        Self::require_admin(caller)?;
        if !is_valid_user_id(user_id) || !is_valid_user_id(course_id) {
            return Err(ChatError::InvalidPayload("userId and courseId must be valid ids".into()));
        }
        let enrollment =
            Enrollment { user_id: user_id.to_owned(), course_id: course_id.to_owned(), purchased_at: Timestamp::now() };
        let stored = self.store.put_enrollment(&enrollment).await?;
        let change = Invalidation::Enrollment { user: user_id.to_owned(), course: course_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(stored)
    }

    pub async fn admin_delete_enrollment(&self, caller: &Caller, user_id: &str, course_id: &str) -> ChatResult<()> {
        Self::require_admin(caller)?;
        self.store.delete_enrollment(user_id, course_id).await?;
        let change = Invalidation::Enrollment { user: user_id.to_owned(), course: course_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(())
    }

    // ---- shared checks -----------------------------------------------------------------------

    /// The chat, when the caller takes part in it; otherwise `not_found` (never `forbidden`, so
    /// a chat's existence does not leak).
    async fn participant_chat(&self, caller: &Caller, chat_id: &str) -> ChatResult<Chat> {
        let chat = if is_object_id(chat_id) { self.store.chat(chat_id).await? } else { None };
        only_participant(chat, caller)
    }

    /// Like [`participant_chat`](Self::participant_chat) from the directory cache: only the
    /// participants and course are meant to be read (its last message may be old). The hot path
    /// (send, typing) uses this, so it keeps working while the store is down.
    async fn participant_chat_cached(&self, caller: &Caller, chat_id: &str) -> ChatResult<Chat> {
        let chat = if is_object_id(chat_id) { self.engine.directory.chat(chat_id).await? } else { None };
        only_participant(chat, caller)
    }

    /// The student holds an enrollment in the course and the tutor is one of its tutors.
    async fn check_access(&self, student: &str, tutor: &str, course_id: &str) -> ChatResult<()> {
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

    /// What a reader that has just read the chat document adds to it: the log's queued messages,
    /// and the newest message of its recent window, since the writer may have moved that one from
    /// the queue to the store after the document was read, and then neither read would show it.
    async fn queued_since_read(&self, chat_id: &str) -> ChatResult<Vec<Message>> {
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
    async fn effective_read_seq(&self, chat_id: &str, user: &str, pending: &[Message]) -> ChatResult<u64> {
        let stored = self.store.read_cursor(chat_id, user).await?;
        let own = pending.iter().filter(|m| m.sender_id == user).map(|m| m.seq).max().unwrap_or(0);
        Ok(stored.max(own))
    }

    async fn view(&self, viewer: &str, chat: Chat, courses: &mut HashMap<String, CourseRef>) -> ChatResult<ChatView> {
        let pending = self.queued_since_read(&chat.id).await?;
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

    /// The users who share a chat with `user`: they see `user_online` / `user_offline`.
    async fn partners(&self, user: &str) -> ChatResult<Vec<String>> {
        let mut partners: Vec<String> =
            self.store.chats_by_user(user).await?.iter().map(|c| c.other(user).to_owned()).collect();
        partners.sort();
        partners.dedup();
        Ok(partners)
    }

    async fn publish(&self, target: Target, except: Option<SocketId>, frame: bytes::Bytes) -> ChatResult<()> {
        Ok(self.engine.bus.publish(Delivery { target, except, frame }).await?)
    }
}

/// The chat, when the caller takes part in it; otherwise `not_found` (never `forbidden`, so a
/// chat's existence does not leak).
fn only_participant(chat: Option<Chat>, caller: &Caller) -> ChatResult<Chat> {
    chat.filter(|c| c.is_participant(&caller.user_id)).ok_or(ChatError::NotFound("chat"))
}

fn participants(chat: &Chat) -> Vec<String> {
    vec![chat.student_id.clone(), chat.tutor_id.clone()]
}

fn course_ref(course: &Course) -> CourseRef {
    CourseRef { id: course.id.clone(), title: course.title.clone() }
}

/// A file name safe to store and show: no path, no control characters, at most 200 chars.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control() && *c != '"').take(200).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "attachment".to_owned()
    } else {
        clean.to_owned()
    }
}

fn check_name(name: &str) -> ChatResult<()> {
    let len = name.trim().chars().count();
    if len == 0 || len > 200 || name.chars().any(char::is_control) {
        return Err(ChatError::InvalidPayload("names and titles are 1..200 characters of text".into()));
    }
    Ok(())
}
