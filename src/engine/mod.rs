//! The engine: everything that must be shared by all nodes of a deployment, each role behind a
//! small trait with an in-process implementation ([`memory`], single node, the default) and a
//! Redis one ([`redis`], many nodes), each implementation one file named for its role.
//!
//! - [`MessageLog`]: the one append call of a send (idempotency by (chat, sender, clientMsgId),
//!   per-chat seq, the durable write-behind queue) followed by its fan-out, and the queue's
//!   consumer side for the store writer. [`history`] is the one read path over log and store.
//! - [`Bus`]: carries encoded events to the nodes holding the recipients' sockets, which hand
//!   them to their [`Hub`](crate::hub::Hub). A node subscribes to a topic for its first local
//!   socket of it and unsubscribes after the last (the node, not the bus, counts sockets).
//! - [`Presence`] and [`Typing`]: who is online, who is typing, with their timers.
//! - [`RateLimiter`]: per-key allowances.
//! - [`Directory`]: the cached lookups of every send (chat, course, enrollment, block); the cache
//!   both engines put in front of them is in [`directory`].
//!
//! Timers that fire inside the engine (a user's grace period ending, a typing state expiring)
//! come out as [`Notice`]s on one bounded channel; the chat layer turns them into events.

pub mod directory;
pub mod history;
pub mod memory;
pub mod redis;

#[cfg(test)]
pub mod contract_tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ErrorCode;
use crate::hub::{Delivery, SocketId};
use crate::model::{Attachment, Message, MessageType, SenderType, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The durable queue or the shared state cannot be reached: the caller answers `unavailable`.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The sender is over the message rate (checked by the log where the allowance is shared):
    /// retry after this long.
    #[error("too many requests; retry in {} ms", .0.as_millis())]
    RateLimited(Duration),
}

impl EngineError {
    /// `unavailable`, saying why.
    pub fn unavailable(why: impl std::fmt::Display) -> Self {
        EngineError::Unavailable(why.to_string())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Unavailable(_) => ErrorCode::Unavailable,
            EngineError::RateLimited(_) => ErrorCode::RateLimited,
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

pub use directory::{Directory, Invalidation};

impl From<crate::store::StoreError> for EngineError {
    fn from(e: crate::store::StoreError) -> Self {
        EngineError::Unavailable(format!("store: {e}"))
    }
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

impl AppendRequest {
    /// The message this request becomes with `seq`: a fresh id, created now.
    pub fn message(&self, seq: u64) -> Message {
        Message {
            id: crate::model::ids::new_object_id(),
            chat_id: self.chat_id.clone(),
            seq,
            sender_id: self.sender_id.clone(),
            sender_type: self.sender_type,
            kind: self.kind,
            content: self.content.clone(),
            attachment: self.attachment.clone(),
            client_msg_id: self.client_msg_id.clone(),
            created_at: Timestamp::now(),
        }
    }
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

/// Where an append's outcome goes, exactly once: see [`MessageLog::submit`].
pub type AppendDone = Box<dyn FnOnce(EngineResult<Appended>) + Send>;

#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// Dedupes, assigns the seq, makes the message durable in the queue, then publishes
    /// `message_received` to the recipients, all as one call so that per chat the events leave
    /// in seq order. Returns once the message is durable.
    async fn append(&self, req: AppendRequest) -> EngineResult<Appended>;
    /// [`append`](Self::append), with the outcome handed to `done` (called exactly once)
    /// wherever the log has it, instead of to the caller. The in-process log calls it on its
    /// committer thread right after the message's fan-out, so a sending socket's ack is written
    /// through like its recipients' events, and its task is not woken to answer. Returns once
    /// the request is queued; by default, once `done` has run.
    async fn submit(&self, req: AppendRequest, done: AppendDone) {
        done(self.append(req).await)
    }
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
    /// Carries the event to every node with a socket it targets; each hands it to its hub.
    async fn publish(&self, delivery: Delivery) -> EngineResult<()>;
    /// This node holds its first socket of `topic`: events published to it reach this node from
    /// now on. The node calls this before the socket is told it is connected or joined, and
    /// never concurrently with [`unsubscribe`](Bus::unsubscribe) of the same topic.
    async fn subscribe(&self, topic: &Topic) -> EngineResult<()>;
    /// This node's last socket of `topic` is gone (closed, or left the room).
    async fn unsubscribe(&self, topic: &Topic);
    /// The sockets of `user` on this node have every message of `chat_id` up to `seq` (they just
    /// joined it): a bus that can lose events fills gaps after this point.
    fn track(&self, user: &str, chat_id: &str, seq: u64);
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
    /// The per-user message rate, checked before a send's append; `None` when the log enforces
    /// it itself (the Redis engine, inside its one send script).
    pub message_limiter: Option<Arc<dyn RateLimiter>>,
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
