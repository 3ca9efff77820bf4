//! The engine: everything that must be shared by all nodes of a deployment, each role behind a
//! small trait with an in-process implementation ([`memory`], single node, the default) and a
//! Redis one (many nodes).
//!
//! - [`MessageLog`]: the one append call of a send (idempotency by (chat, sender, clientMsgId),
//!   per-chat seq, the durable write-behind queue) followed by its fan-out, and the queue's
//!   consumer side for the store writer.
//! - [`Bus`]: carries encoded events to the nodes holding the recipients' sockets.
//! - [`Presence`] and [`Typing`]: who is online, who is typing, with their timers.
//! - [`RateLimiter`]: per-key allowances.
//! - [`Directory`]: the cached lookups of every send (chat, course, enrollment, block).
//!
//! Timers that fire inside the engine (a user's grace period ending, a typing state expiring)
//! come out as [`Notice`]s on one bounded channel; the chat layer turns them into events.

pub mod memory;
pub mod redis;

#[cfg(test)]
pub mod contract_tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ErrorCode;
use crate::hub::{Delivery, SocketId};
use crate::model::time::Timestamp;
use crate::model::{Attachment, Chat, Course, Message, MessageType, SenderType};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The durable queue or the shared state cannot be reached: the caller answers `unavailable`.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl EngineError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unavailable
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

impl From<crate::store::StoreError> for EngineError {
    fn from(e: crate::store::StoreError) -> Self {
        EngineError::Unavailable(format!("store: {e}"))
    }
}

/// Stored messages and queued ones, one copy per seq, ascending.
pub fn merge_by_seq(stored: Vec<Message>, queued: impl IntoIterator<Item = Message>) -> Vec<Message> {
    let mut by_seq: std::collections::BTreeMap<u64, Message> = stored.into_iter().map(|m| (m.seq, m)).collect();
    for m in queued {
        by_seq.entry(m.seq).or_insert(m);
    }
    by_seq.into_values().collect()
}

/// The oldest `limit` messages of a chat with seq > `after`, ascending: from the log's recent
/// window when it holds them all, else the store merged with the log's queue. The queue is read
/// first, so a message the writer moves from one to the other in between is still seen.
pub async fn messages_after<E>(
    log: &dyn MessageLog,
    store: &dyn crate::store::Store,
    chat_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Message>, E>
where
    E: From<EngineError> + From<crate::store::StoreError>,
{
    if let Some(recent) = log.recent(chat_id, Window::After { after, limit }).await? {
        return Ok(recent);
    }
    let pending = log.pending(chat_id).await?;
    let stored = store.messages_after(chat_id, after, limit).await?;
    let mut all = merge_by_seq(stored, pending.into_iter().filter(|m| m.seq > after));
    all.truncate(limit);
    Ok(all)
}

/// A message to append; the log assigns its id, seq and createdAt.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub chat_id: String,
    pub sender_id: String,
    pub sender_type: SenderType,
    pub kind: MessageType,
    pub content: String,
    pub attachment: Option<Attachment>,
    pub client_msg_id: String,
    /// The chat's participants: every socket of theirs receives `message_received`.
    pub recipients: Vec<String>,
    /// The sending socket, which gets the ack instead of the event.
    pub origin: Option<SocketId>,
}

#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Message,
    /// True when (chat, sender, clientMsgId) was seen before: `message` is the first one and
    /// nothing was stored or published.
    pub duplicate: bool,
}

/// Which messages of a chat a read wants; `limit` counts the one extra message that tells the
/// caller there are more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The oldest `limit` messages with seq > `after`.
    After { after: u64, limit: usize },
    /// The newest `limit` messages with seq < `before` (all when `None`).
    Before { before: Option<u64>, limit: usize },
}

/// A message waiting in the durable queue, with the token that releases it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub token: String,
    pub message: Message,
}

#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// Dedupes, assigns the seq, makes the message durable in the queue, then publishes
    /// `message_received` to the recipients, all as one call so that per chat the events leave
    /// in seq order. Returns once the message is durable.
    async fn append(&self, req: AppendRequest) -> EngineResult<Appended>;
    /// The acked messages of a chat that the store may not have yet, ascending by seq.
    async fn pending(&self, chat_id: &str) -> EngineResult<Vec<Message>>;
    /// A window of a chat's messages, ascending, from the log's own recent messages when they
    /// hold all of it; `None` when the store must be asked (the default: no recent window).
    async fn recent(&self, _chat_id: &str, _window: Window) -> EngineResult<Option<Vec<Message>>> {
        Ok(None)
    }
    /// Up to `max` queued messages for the store writer, waiting up to `wait` when there are none.
    async fn next_batch(&self, max: usize, wait: Duration) -> EngineResult<Vec<Queued>>;
    /// Drops messages from the queue once the store has them.
    async fn release(&self, tokens: &[String]) -> EngineResult<()>;
    /// Messages in the queue not yet released.
    async fn backlog(&self) -> EngineResult<u64>;
    /// Whether the durable queue can take sends right now.
    async fn ping(&self) -> EngineResult<()>;
}

/// What a node's sockets listen to: the events of a user, or of a chat's room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    User(String),
    Room(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, delivery: Delivery) -> EngineResult<()>;
    /// A socket of this node listens to `topic` from now on (called once per socket and topic,
    /// before the socket is told it is connected or joined). A bus that spans nodes subscribes
    /// to the topic when it is the node's first listener.
    async fn watch(&self, _topic: Topic) -> EngineResult<()> {
        Ok(())
    }
    /// A socket stopped listening to `topic` (closed, or left the room).
    async fn unwatch(&self, _topic: Topic) {}
    /// The sockets of `user` on this node have every message of `chat_id` up to `seq` (they just
    /// joined it): a bus that can lose events fills gaps after this point.
    fn track(&self, _user: &str, _chat_id: &str, _seq: u64) {}
}

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// A socket of `user` opened; true when the user just came online (no socket and no grace
    /// period before), which is when `user_online` is announced.
    async fn connected(&self, user: &str) -> EngineResult<bool>;
    /// A socket of `user` closed. When it was the last one anywhere and none opens within the
    /// grace period, a [`Notice::Offline`] follows.
    async fn disconnected(&self, user: &str) -> EngineResult<()>;
    async fn online(&self, users: &[String]) -> EngineResult<Vec<bool>>;
}

#[async_trait]
pub trait Typing: Send + Sync + 'static {
    /// Starts or renews a typing state; true when it was not typing before (announce it).
    async fn start(&self, chat_id: &str, user: &str, origin: SocketId) -> EngineResult<bool>;
    /// Ends a typing state; true when there was one (announce the stop).
    async fn stop(&self, chat_id: &str, user: &str) -> EngineResult<bool>;
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one unit of `key`'s allowance, or says how long until one is available.
    async fn check(&self, key: &str) -> EngineResult<Result<(), Duration>>;
}

/// A change the platform or a user made that cached lookups must forget at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Enrollment { user: String, course: String },
    Course(String),
    Block { blocker: String, blocked: String },
}

/// The lookups of every send, join and typing event: the chat's participants, its course's
/// tutors, the student's enrollment and blocks. Cached so the hot path does not read the store
/// each time and keeps working through a store outage (stale entries are served while the store
/// fails); invalidated on every change, on every node, so a revoked enrollment is refused at
/// the next send.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The chat's participants and course (they never change once a chat exists).
    async fn chat(&self, id: &str) -> EngineResult<Option<Chat>>;
    async fn course(&self, id: &str) -> EngineResult<Option<Course>>;
    async fn is_enrolled(&self, user: &str, course: &str) -> EngineResult<bool>;
    async fn is_blocked(&self, blocker: &str, blocked: &str) -> EngineResult<bool>;
    /// Forgets what a change made stale.
    async fn invalidate(&self, change: Invalidation) -> EngineResult<()>;
}

/// Something an engine timer decided, for the chat layer to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The user's last socket closed and the grace period passed with none reopened.
    Offline { user: String, last_seen: Timestamp },
    /// A typing state expired without renewal.
    TypingExpired { chat_id: String, user: String, origin: SocketId },
}

/// Prepares a message for a client (signs its attachment url). The log applies it to the copy it
/// fans out; the stored copy stays as it is.
pub type Presenter = Arc<dyn Fn(&mut Message) + Send + Sync>;

/// The engine a node runs with: one of each role.
#[derive(Clone)]
pub struct Engine {
    pub kind: &'static str,
    pub log: Arc<dyn MessageLog>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub typing: Arc<dyn Typing>,
    pub message_limiter: Arc<dyn RateLimiter>,
    pub directory: Arc<dyn Directory>,
}

/// Timings of presence and typing (CONTRACT: 5 s no-flap, 6 s typing expiry).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub presence_grace: Duration,
    pub typing_ttl: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings { presence_grace: Duration::from_secs(5), typing_ttl: Duration::from_secs(6) }
    }
}
