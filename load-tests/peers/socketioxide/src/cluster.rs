//! Cluster mode (`REDIS_URL` set): the chat rules of `chat.rs` over state that every node shares
//! through Redis, so several nodes behave as one server. Socket.IO's fan-out between nodes is
//! `socketioxide-redis`'s adapter (`main.rs`); this module keeps what the rules need, with the
//! same keys and scripts as the Node peer's `cluster.js`:
//!
//! | key (under `PEER_REDIS_PREFIX`, default `peer:`) | what |
//! | --- | --- |
//! | `user:<id>` | hash `{name, role}` |
//! | `course:<id>`, `course:<id>:tutors` | hash `{title, tutorIds}` (JSON), and a set of the tutors |
//! | `enrollments:<userId>` | hash courseId → purchasedAt |
//! | `chat-of:<student>:<tutor>:<course>` | the chat id of a triple (at most one chat per triple) |
//! | `chat:{<id>}` | hash `{courseId, studentId, tutorId, createdAt, updatedAt, read:<user>}` |
//! | `chat:{<id>}:seq` | the chat's last seq (`INCR`) |
//! | `chat:{<id>}:recent` | stream of the last `PEER_RECENT` messages, entry id `<seq>-0` |
//! | `chat:{<id>}:idem:<sender>:<clientMsgId>` | the first message sent with that id (24 h) |
//! | `rate:<userId>` | GCRA theoretical arrival time (µs of Redis's clock) |
//!
//! A send is two round trips: the rate-limit script pipelined with the enrollment and tutor
//! checks, then the send script (dedupe, `INCR`, append, cursor), atomic, so seqs are gapless and
//! a clientMsgId raced through two nodes is one message. A chat's fixed fields are cached in
//! process; courses, enrollments and names are read from Redis where they are used.
//!
//! Order: the send script and the fan-out of one chat run under that chat's local async mutex,
//! so this node emits a chat's messages in seq order; two nodes sending into one chat at once
//! may publish in either order (clients order by seq).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde_json::value::RawValue;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::auth::{Caller, Role};
use crate::chat::{self, ChatView, Course, CourseRef, Enrollment, Joined, Limits, Participant, User, MAX_MISSED};
use crate::error::ChatError;

/// How long a clientMsgId is remembered (coursechat's `CHAT_IDEMPOTENCY_HOURS` default).
const IDEMPOTENCY_MS: u64 = 24 * 3600 * 1000;
/// Chats whose fixed fields are cached in process; past it the cache starts over.
const CHAT_CACHE: usize = 100_000;

/// Whether users have sockets: on this node, or on any node (a request through the adapter).
pub trait Presence: Sync {
    fn anywhere<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, bool>;
}

/// A message as Redis holds it: its contract JSON, sent on as is.
pub type Json = Box<RawValue>;

/// A chat's fields fixed at creation, and the local lock that orders its sends.
pub struct Chat {
    pub id: String,
    pub course_id: String,
    pub student_id: String,
    pub tutor_id: String,
    created_at: String,
    order: Arc<Mutex<()>>,
}

/// A send that passed every check.
pub struct Sent {
    pub message: Json,
    /// False for a repeated clientMsgId: the first message, nothing stored, nothing to deliver.
    pub fresh: bool,
    pub chat: Arc<Chat>,
    /// The chat's local lock: hold it until the fan-out is handed over.
    pub order: OwnedMutexGuard<()>,
}

pub struct RedisChatService {
    limits: Limits,
    redis: ConnectionManager,
    prefix: String,
    /// Messages kept per chat for join's `missed`.
    recent: u64,
    chats: RwLock<HashMap<String, Arc<Chat>>>,
    /// Users this node has recorded from a token without a name (HSETNX only: nothing to redo).
    signed_in: RwLock<std::collections::HashSet<String>>,
    rate: Script,
    send: Script,
    create_chat: Script,
}

impl RedisChatService {
    /// Connects and loads the scripts, so the first sends run EVALSHA like every later one.
    pub async fn connect(client: redis::Client, prefix: String, recent: u64, limits: Limits) -> Result<Self, String> {
        let redis = ConnectionManager::new(client).await.map_err(|e| format!("redis: {e}"))?;
        let service = RedisChatService {
            limits,
            redis,
            prefix,
            recent,
            chats: RwLock::default(),
            signed_in: RwLock::default(),
            rate: Script::new(include_str!("../../lua/rate.lua")),
            send: Script::new(include_str!("../../lua/send.lua")),
            create_chat: Script::new(include_str!("../../lua/create_chat.lua")),
        };
        for script in [&service.rate, &service.send, &service.create_chat] {
            script.prepare_invoke().load_async(&mut service.redis.clone()).await.map_err(|e| format!("redis: {e}"))?;
        }
        Ok(service)
    }

    /// The prefix, then `parts`.
    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        parts.iter().for_each(|p| key.push_str(p));
        key
    }

    /// `chat:{<id>}`: every key of a chat carries its id as the hash tag.
    fn chat_key(&self, id: &str) -> String {
        self.key(&["chat:{", id, "}"])
    }

    fn con(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// A token's name updates the user record; a user seen for the first time is recorded.
    pub async fn sign_in(&self, caller: &Caller) -> Result<(), ChatError> {
        let key = self.key(&["user:", &caller.user_id]);
        let role = role_name(caller.role);
        match &caller.name {
            None => {
                if read(&self.signed_in).contains(&caller.user_id) {
                    return Ok(());
                }
                let _: () = redis::pipe()
                    .atomic()
                    .hset_nx(&key, "name", &caller.user_id)
                    .ignore()
                    .hset_nx(&key, "role", role)
                    .ignore()
                    .query_async(&mut self.con())
                    .await
                    .map_err(unavailable)?;
                write(&self.signed_in).insert(caller.user_id.clone());
            }
            Some(name) => {
                let _: () = redis::pipe()
                    .atomic()
                    .hset(&key, "name", name)
                    .ignore()
                    .hset_nx(&key, "role", role)
                    .ignore()
                    .query_async(&mut self.con())
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    // --- admin API ---------------------------------------------------------------------------

    pub async fn put_user(&self, caller: &Caller, user: User) -> Result<User, ChatError> {
        chat::check_put_user(caller, &user)?;
        let key = self.key(&["user:", &user.id]);
        let _: () = self
            .con()
            .hset_multiple(&key, &[("name", user.name.as_str()), ("role", role_name(user.role))])
            .await
            .map_err(unavailable)?;
        Ok(user)
    }

    pub async fn put_course(&self, caller: &Caller, course: Course) -> Result<Course, ChatError> {
        chat::check_put_course(caller, &course)?;
        let key = self.key(&["course:", &course.id]);
        let tutors = format!("{key}:tutors");
        let tutor_ids =
            serde_json::to_string(&course.tutor_ids).map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        let mut tx = redis::pipe();
        tx.atomic()
            .hset_multiple(&key, &[("title", course.title.as_str()), ("tutorIds", tutor_ids.as_str())])
            .ignore()
            .del(&tutors)
            .ignore();
        if !course.tutor_ids.is_empty() {
            tx.sadd(&tutors, &course.tutor_ids).ignore();
        }
        let _: () = tx.query_async(&mut self.con()).await.map_err(unavailable)?;
        Ok(course)
    }

    pub async fn put_enrollment(
        &self,
        caller: &Caller,
        user_id: &str,
        course_id: &str,
    ) -> Result<Enrollment, ChatError> {
        chat::check_put_enrollment(caller, user_id, course_id)?;
        let key = self.key(&["enrollments:", user_id]);
        let (purchased_at,): (String,) = redis::pipe()
            .atomic()
            .hset_nx(&key, course_id, chat::now())
            .ignore()
            .hget(&key, course_id)
            .query_async(&mut self.con())
            .await
            .map_err(unavailable)?;
        Ok(Enrollment { user_id: user_id.to_owned(), course_id: course_id.to_owned(), purchased_at })
    }

    // --- chats -------------------------------------------------------------------------------

    pub async fn create_chat(
        &self,
        caller: &Caller,
        participant_id: &str,
        course_id: &str,
        presence: &dyn Presence,
    ) -> Result<(ChatView<Json>, bool), ChatError> {
        let (student, tutor) = chat::chat_sides(caller, participant_id, course_id)?;
        let mut batch = redis::pipe();
        self.access(&mut batch, student, tutor, course_id);
        let access: (bool, bool) = batch.query_async(&mut self.con()).await.map_err(unavailable)?;
        check_access(access, course_id, tutor)?;
        let id = bson::oid::ObjectId::new().to_hex();
        let (created, chat_id): (u8, String) = self
            .create_chat
            .key(self.key(&["chat-of:", student, ":", tutor, ":", course_id]))
            .key(self.chat_key(&id))
            .arg(&id)
            .arg(course_id)
            .arg(student)
            .arg(tutor)
            .arg(chat::now())
            .invoke_async(&mut self.con())
            .await
            .map_err(unavailable)?;
        let chat = self.chat(&chat_id).await?.ok_or(ChatError::NotFound("chat"))?;
        let mut batch = redis::pipe();
        self.view_reads(&mut batch, &chat);
        let reads: ViewReads = batch.query_async(&mut self.con()).await.map_err(unavailable)?;
        Ok((self.view(&caller.user_id, &chat, reads, presence).await?, created == 1))
    }

    pub async fn join(
        &self,
        caller: &Caller,
        chat_id: &str,
        last_seq: Option<u64>,
        presence: &dyn Presence,
    ) -> Result<Joined<Json>, ChatError> {
        let chat = self.participant_chat(caller, chat_id).await?;
        // One round trip: the checks, the view's reads and the missed messages.
        let mut batch = redis::pipe();
        self.access(&mut batch, &chat.student_id, &chat.tutor_id, &chat.course_id);
        self.view_reads(&mut batch, &chat);
        let after = last_seq.unwrap_or(0);
        batch
            .cmd("XRANGE")
            .arg(format!("{}:recent", self.chat_key(&chat.id)))
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(if last_seq.is_some() { MAX_MISSED + 1 } else { 0 });
        let (enrolled, tutor, seq, last, hash, student_name, tutor_name, title, entries): JoinReads =
            batch.query_async(&mut self.con()).await.map_err(unavailable)?;
        check_access((enrolled, tutor), &chat.course_id, &chat.tutor_id)?;
        let view =
            self.view(&caller.user_id, &chat, (seq, last, hash, student_name, tutor_name, title), presence).await?;
        let (mut missed, mut has_more) = (Vec::new(), false);
        if last_seq.is_some() {
            has_more = entries.len() > MAX_MISSED;
            missed = entries.into_iter().take(MAX_MISSED).map(entry_message).collect::<Result<_, _>>()?;
        }
        Ok(Joined { chat: view, missed, has_more })
    }

    /// send_message: every check, then the append; returns with the chat's local lock held.
    pub async fn send(
        &self,
        caller: &Caller,
        chat_id: &str,
        client_msg_id: String,
        content: String,
    ) -> Result<Sent, ChatError> {
        chat::check_send(&client_msg_id, &content, self.limits.max_content_chars)?;
        let chat = self.participant_chat(caller, chat_id).await?;
        let mut batch = redis::pipe();
        batch
            .cmd("EVALSHA")
            .arg(self.rate.get_hash())
            .arg(1)
            .arg(self.key(&["rate:", &caller.user_id]))
            .arg(1_000_000 / u64::from(self.limits.message_rate.get()))
            .arg(self.limits.message_burst.get());
        self.access(&mut batch, &chat.student_id, &chat.tutor_id, &chat.course_id);
        let (wait, enrolled, tutor): (u64, bool, bool) =
            batch.query_async(&mut self.con()).await.map_err(unavailable)?;
        if wait > 0 {
            return Err(ChatError::RateLimited(wait.div_ceil(1_000_000).max(1)));
        }
        check_access((enrolled, tutor), &chat.course_id, &chat.tutor_id)?;

        let created_at = chat::now();
        let fields = serde_json::to_string(&Fields {
            id: bson::oid::ObjectId::new().to_hex(),
            chat_id: &chat.id,
            sender_id: &caller.user_id,
            sender_type: if caller.user_id == chat.tutor_id { "tutor" } else { "user" },
            kind: "text",
            content: &content,
            client_msg_id: &client_msg_id,
            created_at: &created_at,
        })
        .map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        let key = self.chat_key(&chat.id);
        let order = chat.order.clone().lock_owned().await;
        let (fresh, message): (u8, String) = self
            .send
            .key(format!("{key}:idem:{}:{client_msg_id}", caller.user_id))
            .key(format!("{key}:seq"))
            .key(format!("{key}:recent"))
            .key(&key)
            .arg(&fields[1..])
            .arg(IDEMPOTENCY_MS)
            .arg(self.recent)
            .arg(&created_at)
            .arg(&caller.user_id)
            .invoke_async(&mut self.con())
            .await
            .map_err(unavailable)?;
        Ok(Sent { message: raw(message)?, fresh: fresh == 1, chat, order })
    }

    // --- shared checks -----------------------------------------------------------------------

    /// The chat's fixed fields, from the cache or Redis; `None` when there is no such chat.
    async fn chat(&self, chat_id: &str) -> Result<Option<Arc<Chat>>, ChatError> {
        if let Some(chat) = read(&self.chats).get(chat_id) {
            return Ok(Some(chat.clone()));
        }
        let fields: (Option<String>, Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.chat_key(chat_id))
            .arg(&["courseId", "studentId", "tutorId", "createdAt"])
            .query_async(&mut self.con())
            .await
            .map_err(unavailable)?;
        let (Some(course_id), Some(student_id), Some(tutor_id), Some(created_at)) = fields else {
            return Ok(None);
        };
        let mut chats = write(&self.chats);
        if chats.len() >= CHAT_CACHE {
            chats.clear();
        }
        let chat = chats
            .entry(chat_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Chat {
                    id: chat_id.to_owned(),
                    course_id,
                    student_id,
                    tutor_id,
                    created_at,
                    order: Arc::default(),
                })
            })
            .clone();
        Ok(Some(chat))
    }

    /// The chat, when the caller takes part in it; otherwise `not_found`.
    async fn participant_chat(&self, caller: &Caller, chat_id: &str) -> Result<Arc<Chat>, ChatError> {
        if chat_id.len() != 24 || !chat_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ChatError::NotFound("chat"));
        }
        self.chat(chat_id)
            .await?
            .filter(|c| c.student_id == caller.user_id || c.tutor_id == caller.user_id)
            .ok_or(ChatError::NotFound("chat"))
    }

    /// Adds the enrollment and tutor reads to `batch` (two booleans, for [`check_access`]).
    fn access(&self, batch: &mut redis::Pipeline, student: &str, tutor: &str, course_id: &str) {
        batch
            .hexists(self.key(&["enrollments:", student]), course_id)
            .sismember(self.key(&["course:", course_id, ":tutors"]), tutor);
    }

    /// Adds the view's reads to `batch` ([`ViewReads`]).
    fn view_reads(&self, batch: &mut redis::Pipeline, chat: &Chat) {
        let key = self.chat_key(&chat.id);
        batch
            .get(format!("{key}:seq"))
            .cmd("XREVRANGE")
            .arg(format!("{key}:recent"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("HMGET")
            .arg(&key)
            .arg(&["updatedAt".to_owned(), format!("read:{}", chat.student_id), format!("read:{}", chat.tutor_id)])
            .hget(self.key(&["user:", &chat.student_id]), "name")
            .hget(self.key(&["user:", &chat.tutor_id]), "name")
            .hget(self.key(&["course:", &chat.course_id]), "title");
    }

    /// What a caller sees of a chat (CONTRACT: GET /api/chats).
    async fn view(
        &self,
        viewer: &str,
        chat: &Chat,
        (seq, last, (updated_at, student_read, tutor_read), student_name, tutor_name, title): ViewReads,
        presence: &dyn Presence,
    ) -> Result<ChatView<Json>, ChatError> {
        let last_seq = seq.unwrap_or(0);
        let (student_online, tutor_online) =
            tokio::join!(presence.anywhere(&chat.student_id), presence.anywhere(&chat.tutor_id));
        let reads = [student_read.unwrap_or(0).min(last_seq), tutor_read.unwrap_or(0).min(last_seq)];
        let participant = |id: &str, name: Option<String>, role, online, read_seq| Participant {
            id: id.to_owned(),
            name: name.unwrap_or_else(|| id.to_owned()),
            role,
            online,
            read_seq,
        };
        let read_seq = if viewer == chat.student_id { reads[0] } else { reads[1] };
        Ok(ChatView {
            id: chat.id.clone(),
            course: CourseRef { id: chat.course_id.clone(), title: title.unwrap_or_else(|| chat.course_id.clone()) },
            participants: [
                participant(&chat.student_id, student_name, Role::User, student_online, reads[0]),
                participant(&chat.tutor_id, tutor_name, Role::Tutor, tutor_online, reads[1]),
            ],
            last_message: last.into_iter().next().map(entry_message).transpose()?,
            last_seq,
            unread: last_seq - read_seq,
            read_seq,
            created_at: chat.created_at.clone(),
            updated_at: updated_at.unwrap_or_else(|| chat.created_at.clone()),
        })
    }
}

/// A stream entry: (id, [field, value]).
type Entry = (String, Vec<String>);

/// seq, the last entry, (updatedAt, the two read cursors), the two names, the course title.
type ViewReads = (
    Option<u64>,
    Vec<Entry>,
    (Option<String>, Option<u64>, Option<u64>),
    Option<String>,
    Option<String>,
    Option<String>,
);

type JoinReads = (
    bool,
    bool,
    Option<u64>,
    Vec<Entry>,
    (Option<String>, Option<u64>, Option<u64>),
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<Entry>,
);

/// A message's fields but its seq, which the send script puts first.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Fields<'a> {
    id: String,
    chat_id: &'a str,
    sender_id: &'a str,
    sender_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    content: &'a str,
    client_msg_id: &'a str,
    created_at: &'a str,
}

fn entry_message((_, mut fields): Entry) -> Result<Json, ChatError> {
    raw(fields.pop().unwrap_or_default())
}

fn raw(json: String) -> Result<Json, ChatError> {
    RawValue::from_string(json).map_err(|e| ChatError::Unavailable(format!("a stored message is not JSON: {e}")))
}

/// The access reads as the contract's refusals (as `ChatService::check_access`).
fn check_access((enrolled, tutor): (bool, bool), course_id: &str, tutor_id: &str) -> Result<(), ChatError> {
    if !enrolled {
        return Err(ChatError::NotEnrolled(course_id.to_owned()));
    }
    if !tutor {
        return Err(ChatError::NotTutor(format!("{tutor_id} is not a tutor of the course {course_id}")));
    }
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Tutor => "tutor",
        Role::Admin => "admin",
    }
}

fn unavailable(e: redis::RedisError) -> ChatError {
    ChatError::Unavailable(format!("redis: {e}"))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
