//! The single-node message log: the durable write-behind queue is an append-only segmented log
//! ([`segments`](super::segments)) in `queue/` under the data dir; the per-chat seq counters and
//! the dedupe index of (chat, sender, clientMsgId) are in memory for what the log holds, and in
//! `queue.redb` for what has been persisted.
//!
//! An append runs on the committer thread, which takes every send waiting (up to
//! [`MAX_JOBS_PER_COMMIT`]): each is deduped (in memory, else in `queue.redb`, a read), gets the
//! chat's next seq, and is encoded once; the batch is written with one `write` and one
//! `fdatasync`; then, on the same thread and in commit order (seq order per chat), each
//! `message_received` frame is handed to the hub and each sender is answered. So a send costs
//! one sequential append and a share of one sync, not a B-tree transaction.
//!
//! When the store writer releases a batch, its dedupe entries and the chats' seqs are written to
//! `queue.redb` (committed lazily: no fsync per batch) and the batch leaves memory; once a whole
//! segment has been released, one durable commit of `queue.redb` precedes its deletion. At start the log is read back (a torn tail is cut): what
//! `queue.redb` says was released is skipped, the rest is queued again.
//!
//! Retention and bounds: queued messages are held in memory until released (the writer keeps
//! the backlog small while the store answers; during a store outage it grows with the sends, and
//! is on disk too); the seq counters hold one entry per chat that sent since start; dedupe
//! entries older than the idempotency window (24 h by default) are pruned from `queue.redb` (a
//! slice of the index a minute, see [`dedupe`]).
//! If an append's sync fails, the log stops taking sends (they answer `unavailable`, `/readyz`
//! turns 503) until the node restarts and reads back what is valid.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use tokio::sync::{mpsc, oneshot, Notify};

use super::dedupe;
use super::segments::SegmentLog;
use crate::engine::{
    history, AppendDone, AppendRequest, Appended, EngineError, EngineResult, MessageLog, Presenter, Queued,
};
use crate::events::message_received_frame;
use crate::group_commit::GroupCommit;
use crate::hub::{Delivery, Hub, Target};
use crate::model::{Message, Timestamp};
use crate::store::Store;

/// chat → highest seq released to the store.
const SEQS: TableDefinition<&str, u64> = TableDefinition::new("seqs");
/// The queue of earlier versions (position → message JSON), moved into the log at start.
const LEGACY_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
const LEGACY_PENDING: TableDefinition<(&str, u64), u64> = TableDefinition::new("pending");

/// A segment this large is closed and a new one begun.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Sends that share one append and sync at most; bounds the latency one sync adds to the others.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// Sends waiting for the committer. When full, senders wait (back-pressure), they are not
/// refused: the queue drains at the disk's pace.
const JOBS_BOUND: usize = 4096;

/// A message's dedupe key: (chat, sender, clientMsgId) hashed, as in `queue.redb`.
fn key_of(m: &Message) -> dedupe::KeyHash {
    dedupe::key_hash(&m.chat_id, &m.sender_id, &m.client_msg_id)
}

/// What the log holds in memory: the queued (unreleased) messages and the dedupe entries not
/// yet in `queue.redb`.
#[derive(Default)]
struct State {
    /// position → message, oldest first.
    queued: BTreeMap<u64, Message>,
    /// chat → seq → position: the queued messages of one chat.
    by_chat: HashMap<String, BTreeMap<u64, u64>>,
    /// Appended, not yet released: found here before `queue.redb` is asked.
    dedupe: HashMap<dedupe::KeyHash, Message>,
}

impl State {
    /// A message appended at `position` (its dedupe entry went in when it was classified).
    fn queue(&mut self, position: u64, message: Message) {
        self.by_chat.entry(message.chat_id.clone()).or_default().insert(message.seq, position);
        self.queued.insert(position, message);
    }
}

struct Job {
    req: AppendRequest,
    /// Called on the committer thread once the send is durable and fanned out (or refused); a
    /// resend of a released message is answered from a task, after the store is read.
    done: AppendDone,
}

/// What the committer and the log's callers share.
struct Shared {
    state: Mutex<State>,
    segments: Mutex<SegmentLog>,
    index: Arc<Database>,
    /// Woken after each append so an idle store writer picks the message up at once.
    appended: Notify,
    /// An append failed to become durable: no more appends until restart.
    failed: AtomicBool,
}

pub struct MemoryLog {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    /// Writes to `queue.redb` (releases, pruning), group-committed.
    index_writer: GroupCommit,
    idempotency_window: Duration,
    /// Where the next prune of the dedupe index goes on.
    prune_cursor: Mutex<dedupe::PruneCursor>,
}

impl MemoryLog {
    /// Opens the log in `dir` (`queue/` and `queue.redb`, with `cache_bytes` of page cache for
    /// the latter), reads back what it holds, and starts the committer thread.
    pub fn open(
        dir: &Path,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        idempotency_window: Duration,
        presenter: Presenter,
        cache_bytes: usize,
    ) -> EngineResult<Self> {
        std::fs::create_dir_all(dir).map_err(EngineError::unavailable)?;
        let index = Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join("queue.redb"))
            .map_err(EngineError::unavailable)?;
        {
            let txn = index.begin_write().map_err(EngineError::unavailable)?;
            txn.open_table(SEQS).map_err(EngineError::unavailable)?;
            txn.commit().map_err(EngineError::unavailable)?;
        }
        dedupe::open(&index)?;
        let (mut segments, recovered) =
            SegmentLog::open(&dir.join("queue"), SEGMENT_BYTES).map_err(EngineError::unavailable)?;
        let legacy = legacy_queue(&index)?;
        if !legacy.is_empty() {
            let records: Vec<&[u8]> = legacy.iter().map(Vec::as_slice).collect();
            let first = segments.append(&records).map_err(EngineError::unavailable)?;
            tracing::info!(messages = legacy.len(), "moved the queue of an earlier version into the log");
            let mut recovered_legacy = recovered;
            recovered_legacy.records.extend(legacy.into_iter().enumerate().map(|(i, r)| (first + i as u64, r)));
            drop_legacy_queue(&index)?;
            return Self::start(index, segments, recovered_legacy.records, store, hub, idempotency_window, presenter);
        }
        if recovered.torn_bytes > 0 || recovered.damaged > 0 {
            metrics::counter!("coursechat_queue_recovery_cuts_total").increment(1);
        }
        Self::start(index, segments, recovered.records, store, hub, idempotency_window, presenter)
    }

    fn start(
        index: Database,
        segments: SegmentLog,
        records: Vec<(u64, Vec<u8>)>,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        idempotency_window: Duration,
        presenter: Presenter,
    ) -> EngineResult<Self> {
        let mut state = State::default();
        {
            let read = index.begin_read().map_err(EngineError::unavailable)?;
            let seqs = read.open_table(SEQS).map_err(EngineError::unavailable)?;
            let mut released: HashMap<String, u64> = HashMap::new();
            for (position, record) in records {
                let message = decode(&record)?;
                let done = match released.get(&message.chat_id) {
                    Some(seq) => *seq,
                    None => {
                        let seq = seqs
                            .get(message.chat_id.as_str())
                            .map_err(EngineError::unavailable)?
                            .map_or(0, |v| v.value());
                        released.insert(message.chat_id.clone(), seq);
                        seq
                    }
                };
                if message.seq > done {
                    state.dedupe.insert(key_of(&message), message.clone());
                    state.queue(position, message);
                }
            }
        }
        let backlog = state.queued.len();
        metrics::gauge!("coursechat_writebehind_queue_depth").set(backlog as f64);
        let mut segments = segments;
        let oldest_left = state.queued.keys().next().copied().unwrap_or(u64::MAX);
        segments.release_before(oldest_left).map_err(EngineError::unavailable)?;
        let index = Arc::new(index);
        let index_writer = GroupCommit::start(index.clone(), "queue-index").map_err(EngineError::unavailable)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            segments: Mutex::new(segments),
            index,
            appended: Notify::new(),
            failed: AtomicBool::new(false),
        });
        let (jobs, rx) = mpsc::channel(JOBS_BOUND);
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| EngineError::unavailable("the log needs a tokio runtime to answer resends"))?;
        let committer = Committer { shared: shared.clone(), hub, presenter, seqs: HashMap::new(), store, runtime };
        std::thread::Builder::new()
            .name("commit-queue".into())
            .spawn(move || committer.run(rx))
            .map_err(EngineError::unavailable)?;
        Ok(MemoryLog { shared, jobs, index_writer, idempotency_window, prune_cursor: Mutex::new(None) })
    }

    /// Deletes released dedupe entries older than the window; returns how many went.
    pub async fn prune_idempotency(&self) -> EngineResult<usize> {
        let cutoff = Timestamp::now().millis() - self.idempotency_window.as_millis() as i64;
        let from = *self.prune_cursor.lock();
        let (gone, next) = self
            .index_writer
            .write(move |txn| dedupe::prune(txn, from, cutoff))
            .await
            .map_err(EngineError::unavailable)?;
        *self.prune_cursor.lock() = next;
        Ok(gone)
    }
}

fn decode(bytes: &[u8]) -> EngineResult<Message> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Unavailable(format!("corrupt queue entry: {e}")))
}

/// The messages an earlier version left in `queue.redb`'s queue table, oldest first.
fn legacy_queue(index: &Database) -> EngineResult<Vec<Vec<u8>>> {
    let read = index.begin_read().map_err(EngineError::unavailable)?;
    let table = match read.open_table(LEGACY_QUEUE) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::unavailable(e)),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(EngineError::unavailable)? {
        out.push(entry.map_err(EngineError::unavailable)?.1.value().to_vec());
    }
    Ok(out)
}

fn drop_legacy_queue(index: &Database) -> EngineResult<()> {
    let txn = index.begin_write().map_err(EngineError::unavailable)?;
    txn.delete_table(LEGACY_QUEUE).map_err(EngineError::unavailable)?;
    txn.delete_table(LEGACY_PENDING).map_err(EngineError::unavailable)?;
    txn.commit().map_err(EngineError::unavailable)
}

/// The committer thread: dedupe, seq, one append and sync per batch, then fan-out and answers in
/// commit order.
struct Committer {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    presenter: Presenter,
    /// chat → the last seq assigned, for every chat that sent since start.
    seqs: HashMap<String, u64>,
    /// Where a resend of a released message finds the first one, from a task on `runtime`.
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
}

enum Outcome {
    New(Message, Vec<u8>),
    Duplicate(Message),
    Released(u64),
    Failed(EngineError),
}

impl Committer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(64);
        while crate::group_commit::gather(&mut rx, MAX_JOBS_PER_COMMIT, &mut jobs) {
            metrics::histogram!("coursechat_group_commit_jobs", "db" => "queue").record(jobs.len() as f64);
            let started = std::time::Instant::now();
            self.commit(&mut jobs);
            metrics::histogram!("coursechat_group_commit_seconds", "db" => "queue")
                .record(started.elapsed().as_secs_f64());
        }
    }

    fn commit(&mut self, jobs: &mut Vec<Job>) {
        if self.shared.failed.load(Ordering::Relaxed) {
            for job in jobs.drain(..) {
                (job.done)(Err(EngineError::Unavailable("the durable queue failed; restart the node".into())));
            }
            return;
        }
        let outcomes: Vec<Outcome> = jobs.iter().map(|job| self.classify(&job.req)).collect();
        let records: Vec<&[u8]> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::New(_, json) => Some(json.as_slice()),
                _ => None,
            })
            .collect();
        if !records.is_empty() {
            let appended = self.shared.segments.lock().append(&records);
            match appended {
                Ok(mut position) => {
                    let mut state = self.shared.state.lock();
                    for outcome in &outcomes {
                        if let Outcome::New(message, _) = outcome {
                            state.queue(position, message.clone());
                            position += 1;
                        }
                    }
                    metrics::gauge!("coursechat_writebehind_queue_depth").set(state.queued.len() as f64);
                }
                Err(e) => {
                    // What reached the disk is unknown: stop here, a restart reads back what is valid.
                    tracing::error!(error = %e, "appending to the durable queue failed; no more sends until restart");
                    self.shared.failed.store(true, Ordering::Relaxed);
                    for job in jobs.drain(..) {
                        (job.done)(Err(EngineError::unavailable(format!("durable queue: {e}"))));
                    }
                    return;
                }
            }
        }
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            match outcome {
                Outcome::New(message, json) => {
                    self.fan_out(&job.req, &message, &json);
                    (job.done)(Ok(Appended { message, duplicate: false }));
                }
                Outcome::Duplicate(message) => (job.done)(Ok(Appended { message, duplicate: true })),
                Outcome::Released(seq) => {
                    let store = self.store.clone();
                    self.runtime.spawn(async move {
                        let first = history::stored_first(store.as_ref(), &job.req, seq).await;
                        (job.done)(first.map(|message| Appended { message, duplicate: true }))
                    });
                }
                Outcome::Failed(e) => (job.done)(Err(e)),
            }
        }
        self.shared.appended.notify_one();
    }

    /// Dedupes the send, else gives it the chat's next seq and encodes it.
    fn classify(&mut self, req: &AppendRequest) -> Outcome {
        // One hash for both lookups, and no key strings copied.
        let key = dedupe::key_hash(&req.chat_id, &req.sender_id, &req.client_msg_id);
        if let Some(first) = self.shared.state.lock().dedupe.get(&key) {
            return Outcome::Duplicate(first.clone());
        }
        match dedupe::released_seq(&self.shared.index, key) {
            Ok(Some(seq)) => return Outcome::Released(seq),
            Ok(None) => {}
            Err(e) => return Outcome::Failed(e),
        }
        let seq = match self.next_seq(&req.chat_id) {
            Ok(seq) => seq,
            Err(e) => return Outcome::Failed(e),
        };
        let message = req.message(seq);
        let json = match serde_json::to_vec(&message) {
            Ok(json) => json,
            Err(e) => return Outcome::Failed(EngineError::unavailable(e)),
        };
        // A resend later in this batch finds it (and is answered after the same sync).
        self.shared.state.lock().dedupe.insert(key, message.clone());
        Outcome::New(message, json)
    }

    fn next_seq(&mut self, chat_id: &str) -> EngineResult<u64> {
        if let Some(seq) = self.seqs.get_mut(chat_id) {
            *seq += 1;
            return Ok(*seq);
        }
        let read = self.shared.index.begin_read().map_err(EngineError::unavailable)?;
        let released = read
            .open_table(SEQS)
            .map_err(EngineError::unavailable)?
            .get(chat_id)
            .map_err(EngineError::unavailable)?
            .map_or(0, |v| v.value());
        let queued =
            self.shared.state.lock().by_chat.get(chat_id).and_then(|m| m.keys().next_back().copied()).unwrap_or(0);
        let seq = released.max(queued) + 1;
        self.seqs.insert(chat_id.to_owned(), seq);
        Ok(seq)
    }

    /// `message_received`, encoded once for every recipient; a copy with an attachment gets its
    /// url signed first.
    fn fan_out(&self, req: &AppendRequest, message: &Message, json: &[u8]) {
        let frame = if message.attachment.is_some() {
            let mut shown = message.clone();
            (self.presenter)(&mut shown);
            message_received_frame(&serde_json::to_vec(&shown).unwrap_or_default())
        } else {
            message_received_frame(json)
        };
        self.hub.deliver(&Delivery { target: Target::Users(req.recipients.clone()), except: req.origin, frame });
    }
}

#[async_trait]
impl MessageLog for MemoryLog {
    async fn append(&self, req: AppendRequest) -> EngineResult<Appended> {
        let (reply, answer) = oneshot::channel();
        self.submit(
            req,
            Box::new(move |appended| {
                let _ = reply.send(appended);
            }),
        )
        .await;
        answer.await.unwrap_or_else(|_| Err(EngineError::unavailable("the durable queue stopped")))
    }

    async fn submit(&self, req: AppendRequest, done: AppendDone) {
        if let Err(refused) = self.jobs.send(Job { req, done }).await {
            (refused.0.done)(Err(EngineError::unavailable("the durable queue stopped")));
        }
    }

    async fn pending(&self, chat_id: &str) -> EngineResult<Vec<Message>> {
        let state = self.shared.state.lock();
        let Some(positions) = state.by_chat.get(chat_id) else { return Ok(Vec::new()) };
        Ok(positions.values().filter_map(|p| state.queued.get(p).cloned()).collect())
    }

    async fn next_batch(&self, max: usize, wait: Duration) -> EngineResult<Vec<Queued>> {
        let read = || -> Vec<Queued> {
            let state = self.shared.state.lock();
            state
                .queued
                .iter()
                .take(max)
                .map(|(position, message)| Queued { token: position.to_string(), message: message.clone() })
                .collect()
        };
        let notified = self.shared.appended.notified();
        let batch = read();
        if !batch.is_empty() {
            return Ok(batch);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        Ok(read())
    }

    async fn release(&self, tokens: &[String]) -> EngineResult<()> {
        let positions: Vec<u64> = tokens.iter().filter_map(|t| t.parse().ok()).collect();
        // What the index needs of each message (its key hash, seq and time) and each chat's
        // newest seq; the messages stay where they are until the index has them.
        let mut entries = Vec::with_capacity(positions.len());
        let mut newest: HashMap<String, u64> = HashMap::new();
        {
            let state = self.shared.state.lock();
            for m in positions.iter().filter_map(|p| state.queued.get(p)) {
                entries.push(dedupe::Entry::of(m));
                match newest.get_mut(m.chat_id.as_str()) {
                    Some(seq) => *seq = (*seq).max(m.seq),
                    None => {
                        newest.insert(m.chat_id.clone(), m.seq);
                    }
                }
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        // The dedupe entries and seqs go to queue.redb first, lazily (no fsync of their own): a
        // crash that takes them leaves the segments, which are read back at start. Before a
        // segment is deleted, one durable commit makes everything released so far durable.
        self.index_writer
            .write_lazily(move |txn| {
                dedupe::record(txn, &entries)?;
                let mut seqs = txn.open_table(SEQS)?;
                for (chat, seq) in newest {
                    if seq > seqs.get(chat.as_str())?.map_or(0, |v| v.value()) {
                        seqs.insert(chat.as_str(), seq)?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(EngineError::unavailable)?;
        let oldest_left = {
            let mut state = self.shared.state.lock();
            for position in &positions {
                let Some(message) = state.queued.remove(position) else { continue };
                if let Some(chat) = state.by_chat.get_mut(&message.chat_id) {
                    chat.remove(&message.seq);
                    if chat.is_empty() {
                        state.by_chat.remove(&message.chat_id);
                    }
                }
                state.dedupe.remove(&key_of(&message));
            }
            metrics::gauge!("coursechat_writebehind_queue_depth").set(state.queued.len() as f64);
            state.queued.keys().next().copied().unwrap_or(u64::MAX)
        };
        if self.shared.segments.lock().releasable_before(oldest_left) {
            self.index_writer.write(|_| Ok(())).await.map_err(EngineError::unavailable)?;
            self.shared.segments.lock().release_before(oldest_left).map_err(EngineError::unavailable)?;
        }
        Ok(())
    }

    async fn backlog(&self) -> EngineResult<u64> {
        Ok(self.shared.state.lock().queued.len() as u64)
    }

    async fn ping(&self) -> EngineResult<()> {
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(EngineError::unavailable("the durable queue failed; restart the node"));
        }
        self.shared.index.begin_read().map(|_| ()).map_err(EngineError::unavailable)
    }
}
