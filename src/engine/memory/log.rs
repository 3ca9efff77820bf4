//! The single-node message log: seq counters, the idempotency window and the durable
//! write-behind queue in `queue.redb` in the data dir, fan-out straight into the local hub.
//!
//! An append is one group-committed redb transaction (dedupe, seq, enqueue), so it is fsync'd
//! before the ack while concurrent sends share the fsync. The `message_received` frame is handed
//! to the hub on the commit thread right after the commit, in commit order, which is seq order
//! per chat.
//!
//! Retention: queue entries live until the store writer releases them; idempotency entries live
//! for the idempotency window (24 h by default) and are pruned by age, so nothing here grows
//! with the history. Nothing is kept in memory per chat, user or clientMsgId.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::Notify;

use crate::engine::{AppendRequest, Appended, EngineError, EngineResult, MessageLog, Presenter, Queued};
use crate::events::message_received_frame;
use crate::group_commit::GroupCommit;
use crate::hub::{Delivery, Hub, Target};
use crate::model::ids::new_object_id;
use crate::model::time::Timestamp;
use crate::model::Message;

/// chat → last seq assigned.
const SEQS: TableDefinition<&str, u64> = TableDefinition::new("seqs");
/// (chat, sender, clientMsgId) → the first message (JSON).
const IDEMPOTENCY: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("idempotency");
/// (createdAt millis, chat, sender, clientMsgId): the same keys in age order, for pruning.
const IDEMPOTENCY_AGE: TableDefinition<(i64, &str, &str, &str), ()> = TableDefinition::new("idempotency_age");
/// queue position → message (JSON): the write-behind queue, in append order.
const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// (chat, seq) → queue position: the queued messages of one chat.
const PENDING: TableDefinition<(&str, u64), u64> = TableDefinition::new("pending");

pub struct MemoryLog {
    db: Arc<Database>,
    writer: GroupCommit,
    hub: Arc<Hub>,
    /// The next queue position; positions only grow, so the queue table is FIFO.
    next_position: Arc<AtomicU64>,
    backlog: Arc<AtomicU64>,
    /// Woken after each append so an idle store writer picks the message up at once.
    appended: Arc<Notify>,
    idempotency_window: Duration,
    presenter: Presenter,
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

impl MemoryLog {
    pub fn open(dir: &Path, hub: Arc<Hub>, idempotency_window: Duration, presenter: Presenter) -> EngineResult<Self> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("queue.redb")).map_err(unavailable)?;
        let (next, backlog) = {
            let txn = db.begin_write().map_err(unavailable)?;
            txn.open_table(SEQS).map_err(unavailable)?;
            txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
            txn.open_table(IDEMPOTENCY_AGE).map_err(unavailable)?;
            txn.open_table(PENDING).map_err(unavailable)?;
            let (next, len) = {
                let queue = txn.open_table(QUEUE).map_err(unavailable)?;
                let last = queue.last().map_err(unavailable)?.map(|(k, _)| k.value());
                (last.map_or(0, |k| k + 1), queue.len().map_err(unavailable)?)
            };
            txn.commit().map_err(unavailable)?;
            (next, len)
        };
        let db = Arc::new(db);
        let writer = GroupCommit::start(db.clone(), "queue").map_err(unavailable)?;
        metrics::gauge!("coursechat_writebehind_queue_depth").set(backlog as f64);
        Ok(MemoryLog {
            db,
            writer,
            hub,
            next_position: Arc::new(AtomicU64::new(next)),
            backlog: Arc::new(AtomicU64::new(backlog)),
            appended: Arc::new(Notify::new()),
            idempotency_window,
            presenter,
        })
    }

    /// Deletes idempotency entries older than the window; returns how many went.
    pub async fn prune_idempotency(&self) -> EngineResult<usize> {
        let cutoff = Timestamp::now().millis() - self.idempotency_window.as_millis() as i64;
        self.writer
            .write(move |txn| {
                let mut age = txn.open_table(IDEMPOTENCY_AGE)?;
                let mut keys = txn.open_table(IDEMPOTENCY)?;
                let mut expired = Vec::new();
                for entry in age.range((i64::MIN, "", "", "")..(cutoff, "", "", ""))?.take(10_000) {
                    let (k, _) = entry?;
                    let (at, chat, sender, cmid) = k.value();
                    expired.push((at, chat.to_owned(), sender.to_owned(), cmid.to_owned()));
                }
                for (at, chat, sender, cmid) in &expired {
                    keys.remove((chat.as_str(), sender.as_str(), cmid.as_str()))?;
                    age.remove((*at, chat.as_str(), sender.as_str(), cmid.as_str()))?;
                }
                Ok(expired.len())
            })
            .await
            .map_err(unavailable)
    }
}

fn decode(bytes: &[u8]) -> EngineResult<Message> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Unavailable(format!("corrupt queue entry: {e}")))
}

#[async_trait]
impl MessageLog for MemoryLog {
    async fn append(&self, req: AppendRequest) -> EngineResult<Appended> {
        let next_position = self.next_position.clone();
        let hub = self.hub.clone();
        let backlog = self.backlog.clone();
        let recipients = req.recipients.clone();
        let origin = req.origin;
        let presenter = self.presenter.clone();
        let (appended, _json) = self
            .writer
            .write_then(
                move |txn| {
                    let mut idempotency = txn.open_table(IDEMPOTENCY)?;
                    let key = (req.chat_id.as_str(), req.sender_id.as_str(), req.client_msg_id.as_str());
                    if let Some(first) = idempotency.get(key)? {
                        let message =
                            serde_json::from_slice(first.value()).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                        return Ok((Appended { message, duplicate: true }, Vec::new()));
                    }
                    let mut seqs = txn.open_table(SEQS)?;
                    let seq = seqs.get(req.chat_id.as_str())?.map_or(0, |v| v.value()) + 1;
                    seqs.insert(req.chat_id.as_str(), seq)?;
                    let message = Message {
                        id: new_object_id(),
                        chat_id: req.chat_id.clone(),
                        seq,
                        sender_id: req.sender_id.clone(),
                        sender_type: req.sender_type,
                        kind: req.kind,
                        content: req.content,
                        attachment: req.attachment,
                        client_msg_id: req.client_msg_id.clone(),
                        created_at: Timestamp::now(),
                    };
                    let json = serde_json::to_vec(&message).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                    let position = next_position.fetch_add(1, Ordering::SeqCst);
                    txn.open_table(QUEUE)?.insert(position, json.as_slice())?;
                    txn.open_table(PENDING)?.insert((message.chat_id.as_str(), seq), position)?;
                    idempotency.insert(key, json.as_slice())?;
                    txn.open_table(IDEMPOTENCY_AGE)?.insert((message.created_at.millis(), key.0, key.1, key.2), ())?;
                    Ok((Appended { message, duplicate: false }, json))
                },
                move |(appended, json)| {
                    if appended.duplicate {
                        return;
                    }
                    let depth = backlog.fetch_add(1, Ordering::SeqCst) + 1;
                    metrics::gauge!("coursechat_writebehind_queue_depth").set(depth as f64);
                    // Encoded once for every recipient; a copy with an attachment gets its url
                    // signed first.
                    let frame = if appended.message.attachment.is_some() {
                        let mut shown = appended.message.clone();
                        presenter(&mut shown);
                        message_received_frame(&serde_json::to_vec(&shown).unwrap_or_default())
                    } else {
                        message_received_frame(json)
                    };
                    hub.deliver(&Delivery { target: Target::Users(recipients), except: origin, frame });
                },
            )
            .await
            .map_err(unavailable)?;
        if !appended.duplicate {
            self.appended.notify_one();
        }
        Ok(appended)
    }

    async fn pending(&self, chat_id: &str) -> EngineResult<Vec<Message>> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let pending = txn.open_table(PENDING).map_err(unavailable)?;
        let queue = txn.open_table(QUEUE).map_err(unavailable)?;
        let mut out = Vec::new();
        for entry in pending.range((chat_id, 0u64)..=(chat_id, u64::MAX)).map_err(unavailable)? {
            let (_, position) = entry.map_err(unavailable)?;
            if let Some(bytes) = queue.get(position.value()).map_err(unavailable)? {
                out.push(decode(bytes.value())?);
            }
        }
        Ok(out)
    }

    async fn next_batch(&self, max: usize, wait: Duration) -> EngineResult<Vec<Queued>> {
        let read = |max: usize| -> EngineResult<Vec<Queued>> {
            let txn = self.db.begin_read().map_err(unavailable)?;
            let queue = txn.open_table(QUEUE).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in queue.iter().map_err(unavailable)?.take(max) {
                let (position, bytes) = entry.map_err(unavailable)?;
                out.push(Queued { token: position.value().to_string(), message: decode(bytes.value())? });
            }
            Ok(out)
        };
        let notified = self.appended.notified();
        let batch = read(max)?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        read(max)
    }

    async fn release(&self, tokens: &[String]) -> EngineResult<()> {
        let positions: Vec<u64> = tokens.iter().filter_map(|t| t.parse().ok()).collect();
        let released = self
            .writer
            .write(move |txn| {
                let mut queue = txn.open_table(QUEUE)?;
                let mut pending = txn.open_table(PENDING)?;
                let mut released = 0u64;
                for position in positions {
                    if let Some(bytes) = queue.remove(position)? {
                        let message: Message =
                            serde_json::from_slice(bytes.value()).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                        drop(bytes);
                        pending.remove((message.chat_id.as_str(), message.seq))?;
                        released += 1;
                    }
                }
                Ok(released)
            })
            .await
            .map_err(unavailable)?;
        let depth = self.backlog.fetch_sub(released, Ordering::SeqCst).saturating_sub(released);
        metrics::gauge!("coursechat_writebehind_queue_depth").set(depth as f64);
        Ok(())
    }

    async fn backlog(&self) -> EngineResult<u64> {
        Ok(self.backlog.load(Ordering::SeqCst))
    }

    async fn ping(&self) -> EngineResult<()> {
        self.db.begin_read().map(|_| ()).map_err(unavailable)
    }
}
