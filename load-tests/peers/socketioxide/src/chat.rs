//! The chat rules, over data kept in this process's memory only: users, courses, enrollments,
//! chats and every chat's messages. Nothing is persisted; a restart forgets everything.
//!
//! REST and Socket.IO are thin adapters over these functions, so a check exists once. A chat's
//! messages sit behind one async mutex per chat: [`ChatService::send`] assigns the seq and hands
//! back the locked log ([`Sent::order`]), which the caller holds until the fan-out is handed to
//! the sockets, so deliveries leave in seq order even when sends of one chat run on both cores.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::auth::{is_valid_id, Caller, Role};
use crate::error::ChatError;

/// Most messages in a join's `missed` (CONTRACT: join_chat).
pub const MAX_MISSED: usize = 500;

pub struct Limits {
    pub max_content_chars: usize,
    pub message_rate: NonZeroU32,
    pub message_burst: NonZeroU32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Course {
    pub id: String,
    pub title: String,
    pub tutor_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub user_id: String,
    pub course_id: String,
    pub purchased_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub chat_id: String,
    pub seq: u64,
    pub sender_id: String,
    pub sender_type: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub content: String,
    pub client_msg_id: String,
    pub created_at: String,
}

/// One chat: who and which course (fixed at creation), and its messages behind its lock.
pub struct Chat {
    pub id: String,
    pub course_id: String,
    pub student_id: String,
    pub tutor_id: String,
    created_at: String,
    /// Async, because it is held across the fan-out of a send (see the module header).
    log: Arc<Mutex<ChatLog>>,
}

pub struct ChatLog {
    /// Every message in seq order: `messages[seq - 1]`.
    messages: Vec<Arc<Message>>,
    /// Per sender (0 student, 1 tutor): clientMsgId → index in `messages`, which makes a send
    /// idempotent per (chat, sender).
    client_msg_ids: [HashMap<String, usize>; 2],
    /// Read cursors (0 student, 1 tutor); sending moves the sender's.
    read_seq: [u64; 2],
    updated_at: String,
}

impl Chat {
    fn side(&self, user_id: &str) -> Option<usize> {
        if user_id == self.student_id {
            Some(0)
        } else if user_id == self.tutor_id {
            Some(1)
        } else {
            None
        }
    }
}

/// What a caller sees of a chat (CONTRACT: GET /api/chats). `M` is how a message is held: the
/// cluster mode keeps them as the JSON Redis holds.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatView<M = Arc<Message>> {
    pub id: String,
    pub course: CourseRef,
    pub participants: [Participant; 2],
    pub last_message: Option<M>,
    pub last_seq: u64,
    pub unread: u64,
    pub read_seq: u64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize)]
pub struct CourseRef {
    pub id: String,
    pub title: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub online: bool,
    pub read_seq: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined<M = Arc<Message>> {
    pub chat: ChatView<M>,
    pub missed: Vec<M>,
    pub has_more: bool,
}

/// A send that passed every check.
pub struct Sent {
    pub message: Arc<Message>,
    /// False for a repeated clientMsgId: the first message, nothing stored, nothing to deliver.
    pub fresh: bool,
    pub chat: Arc<Chat>,
    /// The chat's log, still locked: hold it until the fan-out is handed over.
    pub order: OwnedMutexGuard<ChatLog>,
}

#[derive(Default)]
struct Directory {
    users: HashMap<String, User>,
    courses: HashMap<String, Course>,
    /// user id → course id → enrollment.
    enrollments: HashMap<String, HashMap<String, Enrollment>>,
}

#[derive(Default)]
struct ChatIndex {
    by_id: HashMap<String, Arc<Chat>>,
    /// (student, tutor, course) → chat id: at most one chat per triple.
    by_triple: HashMap<(String, String, String), String>,
}

pub struct ChatService {
    limits: Limits,
    directory: RwLock<Directory>,
    chats: RwLock<ChatIndex>,
    /// Per-user send budget (GCRA), as coursechat's default: `message_rate`/s, burst `message_burst`.
    budgets: DefaultKeyedRateLimiter<String>,
}

/// Whether a user has a connected socket (from the socket layer, which owns presence).
pub type Online<'a> = &'a (dyn Fn(&str) -> bool + Sync);

impl ChatService {
    pub fn new(limits: Limits) -> Self {
        let quota = Quota::per_second(limits.message_rate).allow_burst(limits.message_burst);
        ChatService {
            limits,
            directory: RwLock::default(),
            chats: RwLock::default(),
            budgets: RateLimiter::keyed(quota),
        }
    }

    /// Forgets the budgets of users that are back to a full burst (bounds the limiter's map).
    pub fn forget_idle_budgets(&self) {
        self.budgets.retain_recent();
    }

    /// What a verified token says about its user: its name updates the record, and a user seen
    /// for the first time is recorded (CONTRACT: "from their own earlier sign-in").
    pub fn sign_in(&self, caller: &Caller) {
        let up_to_date = read(&self.directory)
            .users
            .get(&caller.user_id)
            .is_some_and(|u| caller.name.as_ref().is_none_or(|n| *n == u.name));
        if up_to_date {
            return;
        }
        let mut directory = write(&self.directory);
        let user = directory.users.entry(caller.user_id.clone()).or_insert_with(|| User {
            id: caller.user_id.clone(),
            name: caller.user_id.clone(),
            role: caller.role,
        });
        if let Some(name) = &caller.name {
            user.name.clone_from(name);
        }
    }

    // --- admin API ---------------------------------------------------------------------------

    pub fn put_user(&self, caller: &Caller, user: User) -> Result<User, ChatError> {
        check_put_user(caller, &user)?;
        write(&self.directory).users.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    pub fn put_course(&self, caller: &Caller, course: Course) -> Result<Course, ChatError> {
        check_put_course(caller, &course)?;
        write(&self.directory).courses.insert(course.id.clone(), course.clone());
        Ok(course)
    }

    pub fn put_enrollment(&self, caller: &Caller, user_id: &str, course_id: &str) -> Result<Enrollment, ChatError> {
        check_put_enrollment(caller, user_id, course_id)?;
        let mut directory = write(&self.directory);
        let enrollment =
            directory.enrollments.entry(user_id.to_owned()).or_default().entry(course_id.to_owned()).or_insert_with(
                || Enrollment { user_id: user_id.to_owned(), course_id: course_id.to_owned(), purchased_at: now() },
            );
        Ok(enrollment.clone())
    }

    // --- chats -------------------------------------------------------------------------------

    /// POST /api/chats: the chat and whether it was created.
    pub async fn create_chat(
        &self,
        caller: &Caller,
        participant_id: &str,
        course_id: &str,
        online: Online<'_>,
    ) -> Result<(ChatView, bool), ChatError> {
        let (student, tutor) = chat_sides(caller, participant_id, course_id)?;
        self.check_access(student, tutor, course_id)?;
        let (chat, created) = {
            let mut index = write(&self.chats);
            let triple = (student.to_owned(), tutor.to_owned(), course_id.to_owned());
            match index.by_triple.get(&triple).and_then(|id| index.by_id.get(id)) {
                Some(chat) => (chat.clone(), false),
                None => {
                    let at = now();
                    let chat = Arc::new(Chat {
                        id: bson::oid::ObjectId::new().to_hex(),
                        course_id: course_id.to_owned(),
                        student_id: student.to_owned(),
                        tutor_id: tutor.to_owned(),
                        created_at: at.clone(),
                        log: Arc::new(Mutex::new(ChatLog {
                            messages: Vec::new(),
                            client_msg_ids: Default::default(),
                            read_seq: [0, 0],
                            updated_at: at,
                        })),
                    });
                    index.by_triple.insert(triple, chat.id.clone());
                    index.by_id.insert(chat.id.clone(), chat.clone());
                    (chat, true)
                }
            }
        };
        let log = chat.log.lock().await;
        Ok((self.view(&caller.user_id, &chat, &log, online), created))
    }

    /// join_chat: the checks of a send, then the chat and what the caller missed after
    /// `last_seq`. The socket layer puts the socket into the chat's room.
    pub async fn join(
        &self,
        caller: &Caller,
        chat_id: &str,
        last_seq: Option<u64>,
        online: Online<'_>,
    ) -> Result<Joined, ChatError> {
        let chat = self.participant_chat(caller, chat_id)?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id)?;
        let log = chat.log.lock().await;
        let (missed, has_more) = match last_seq {
            None => (Vec::new(), false),
            Some(after) => {
                let from = usize::try_from(after).unwrap_or(usize::MAX).min(log.messages.len());
                let to = from.saturating_add(MAX_MISSED).min(log.messages.len());
                (log.messages[from..to].to_vec(), to < log.messages.len())
            }
        };
        Ok(Joined { chat: self.view(&caller.user_id, &chat, &log, online), missed, has_more })
    }

    /// send_message: every check, then the append; returns with the chat's log still locked.
    pub async fn send(
        &self,
        caller: &Caller,
        chat_id: &str,
        client_msg_id: String,
        content: String,
    ) -> Result<Sent, ChatError> {
        check_send(&client_msg_id, &content, self.limits.max_content_chars)?;
        if let Err(not_until) = self.budgets.check_key(&caller.user_id) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ChatError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        let chat = self.participant_chat(caller, chat_id)?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id)?;
        let side = chat.side(&caller.user_id).ok_or(ChatError::NotFound("chat"))?;

        let mut log = chat.log.clone().lock_owned().await;
        if let Some(&first) = log.client_msg_ids[side].get(&client_msg_id) {
            let message = log.messages[first].clone();
            return Ok(Sent { message, fresh: false, chat, order: log });
        }
        let message = Arc::new(Message {
            id: bson::oid::ObjectId::new().to_hex(),
            chat_id: chat.id.clone(),
            seq: log.messages.len() as u64 + 1,
            sender_id: caller.user_id.clone(),
            sender_type: if side == 1 { "tutor" } else { "user" },
            kind: "text",
            content,
            client_msg_id: client_msg_id.clone(),
            created_at: now(),
        });
        let index = log.messages.len();
        log.messages.push(message.clone());
        log.client_msg_ids[side].insert(client_msg_id, index);
        log.read_seq[side] = message.seq;
        log.updated_at.clone_from(&message.created_at);
        Ok(Sent { message, fresh: true, chat, order: log })
    }

    // --- shared checks -----------------------------------------------------------------------

    /// The chat, when the caller takes part in it; otherwise `not_found` (never `forbidden`, so
    /// a chat's existence does not leak).
    fn participant_chat(&self, caller: &Caller, chat_id: &str) -> Result<Arc<Chat>, ChatError> {
        read(&self.chats)
            .by_id
            .get(chat_id)
            .filter(|c| c.side(&caller.user_id).is_some())
            .cloned()
            .ok_or(ChatError::NotFound("chat"))
    }

    /// The student holds an enrollment in the course and the tutor is one of its tutors.
    fn check_access(&self, student: &str, tutor: &str, course_id: &str) -> Result<(), ChatError> {
        let directory = read(&self.directory);
        let course = directory.courses.get(course_id);
        if !directory.enrollments.get(student).is_some_and(|e| e.contains_key(course_id)) {
            return Err(ChatError::NotEnrolled(course.map_or(course_id, |c| &c.title).to_owned()));
        }
        match course {
            Some(c) if c.tutor_ids.iter().any(|t| t == tutor) => Ok(()),
            _ => Err(ChatError::NotTutor(format!("{tutor} is not a tutor of the course {course_id}"))),
        }
    }

    fn view(&self, viewer: &str, chat: &Chat, log: &ChatLog, online: Online<'_>) -> ChatView {
        let directory = read(&self.directory);
        let last_seq = log.messages.len() as u64;
        let name = |id: &str| directory.users.get(id).map_or_else(|| id.to_owned(), |u| u.name.clone());
        let participant = |id: &str, role, side: usize| Participant {
            id: id.to_owned(),
            name: name(id),
            role,
            online: online(id),
            read_seq: log.read_seq[side].min(last_seq),
        };
        let read_seq = chat.side(viewer).map_or(0, |s| log.read_seq[s]).min(last_seq);
        ChatView {
            id: chat.id.clone(),
            course: CourseRef {
                id: chat.course_id.clone(),
                title: directory
                    .courses
                    .get(&chat.course_id)
                    .map_or_else(|| chat.course_id.clone(), |c| c.title.clone()),
            },
            participants: [participant(&chat.student_id, Role::User, 0), participant(&chat.tutor_id, Role::Tutor, 1)],
            last_message: log.messages.last().cloned(),
            last_seq,
            unread: last_seq - read_seq,
            read_seq,
            created_at: chat.created_at.clone(),
            updated_at: log.updated_at.clone(),
        }
    }
}

// --- checks shared with the cluster mode (cluster.rs) ----------------------------------------

pub fn check_put_user(caller: &Caller, user: &User) -> Result<(), ChatError> {
    require_admin(caller)?;
    if !is_valid_id(&user.id) {
        return Err(ChatError::InvalidPayload("invalid user id".into()));
    }
    check_name(&user.name)
}

pub fn check_put_course(caller: &Caller, course: &Course) -> Result<(), ChatError> {
    require_admin(caller)?;
    if !is_valid_id(&course.id) {
        return Err(ChatError::InvalidPayload("invalid course id".into()));
    }
    check_name(&course.title)?;
    if let Some(bad) = course.tutor_ids.iter().find(|t| !is_valid_id(t)) {
        return Err(ChatError::InvalidPayload(format!("invalid tutor id {bad:?}")));
    }
    Ok(())
}

pub fn check_put_enrollment(caller: &Caller, user_id: &str, course_id: &str) -> Result<(), ChatError> {
    require_admin(caller)?;
    if !is_valid_id(user_id) || !is_valid_id(course_id) {
        return Err(ChatError::InvalidPayload("userId and courseId must be valid ids".into()));
    }
    Ok(())
}

/// POST /api/chats: (student, tutor) of the chat the caller asks for.
pub fn chat_sides<'a>(
    caller: &'a Caller,
    participant_id: &'a str,
    course_id: &str,
) -> Result<(&'a str, &'a str), ChatError> {
    if !is_valid_id(participant_id) || !is_valid_id(course_id) {
        return Err(ChatError::InvalidPayload("participantId and courseId must be valid ids".into()));
    }
    if participant_id == caller.user_id {
        return Err(ChatError::InvalidPayload("a chat needs another participant".into()));
    }
    match caller.role {
        Role::User => Ok((caller.user_id.as_str(), participant_id)),
        Role::Tutor => Ok((participant_id, caller.user_id.as_str())),
        Role::Admin => Err(ChatError::Forbidden("admins do not take part in chats")),
    }
}

/// The checks of a send that need nothing but its fields.
pub fn check_send(client_msg_id: &str, content: &str, max_content_chars: usize) -> Result<(), ChatError> {
    let id_chars = client_msg_id.chars().count();
    if id_chars == 0 || id_chars > 64 {
        return Err(ChatError::InvalidPayload("clientMsgId must be 1 to 64 characters".into()));
    }
    check_content(content, max_content_chars)
}

fn require_admin(caller: &Caller) -> Result<(), ChatError> {
    if caller.role != Role::Admin {
        return Err(ChatError::Forbidden("the admin API needs an admin token"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ChatError> {
    let len = name.trim().chars().count();
    if len == 0 || len > 200 || name.chars().any(char::is_control) {
        return Err(ChatError::InvalidPayload("names and titles are 1..200 characters of text".into()));
    }
    Ok(())
}

/// 1..=`max_chars` code points after trimming; no control characters but `\n` and `\t`.
fn check_content(content: &str, max_chars: usize) -> Result<(), ChatError> {
    if let Some(c) = content.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t') {
        return Err(ChatError::InvalidPayload(format!("content contains the control character U+{:04X}", c as u32)));
    }
    let trimmed = content.trim();
    if trimmed.is_empty() {
        return Err(ChatError::InvalidPayload("content is empty".into()));
    }
    let chars = trimmed.chars().count();
    if chars > max_chars {
        return Err(ChatError::TooLarge(format!("content has {chars} characters; the limit is {max_chars}")));
    }
    Ok(())
}

/// RFC 3339 UTC with milliseconds, as the contract's `createdAt`.
pub fn now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(&format).unwrap_or_default()
}

/// A poisoned lock only means a panic elsewhere; every write here leaves the maps consistent.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
