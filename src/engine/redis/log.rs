//! The Redis message log: one Lua script per send, the durable queue as one stream per shard
//! read by a consumer group (`writers`) with one consumer per node, and the per-chat recent
//! window and pending set that reads use instead of the store.
//!
//! Durability: the ack follows the script, so an acked message is in Redis; how durable that is
//! depends on Redis's own settings (AOF `appendfsync always`, or a replica and WAIT), see
//! docs/REDIS.md. The store writer XACKs and deletes an entry only after the store confirmed it;
//! entries another node took and never released are claimed after [`CLAIM_IDLE`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};
use redis::{Script, Value};
use tokio::time::Instant;

use super::{unavailable, Redis, RedisOptions};
use crate::engine::{
    history, AppendRequest, Appended, EngineError, EngineResult, MessageLog, Presenter, Queued, Window,
};
use crate::model::Message;
use crate::store::Store;

const GROUP: &str = "writers";
/// An entry another consumer has held this long without releasing it is claimed (its node died,
/// or its store write is stuck).
const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// How often a node looks for such entries.
const CLAIM_EVERY: Duration = Duration::from_secs(5);
/// A consumer with nothing pending and idle this long belonged to a node that is gone (node ids
/// are random per process unless `CHAT_NODE_ID` is set): it is removed from the group.
const CONSUMER_GONE_AFTER: Duration = Duration::from_secs(3600);
/// How often a node looks for such consumers.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Longest XREADGROUP BLOCK (the pooled connection itself times out an answer at 500 ms).
const MAX_BLOCK: Duration = Duration::from_millis(300);

static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/append.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));

pub struct RedisLog {
    redis: Redis,
    /// Where a chat's seq counter is seeded from when Redis has none, and where a duplicate's
    /// first message is found once Redis let go of it.
    store: Arc<dyn Store>,
    presenter: Presenter,
    idempotency_ms: String,
    recent: String,
    recent_ttl_ms: String,
    /// The per-sender message rate the send script enforces: ms per message, and the burst.
    rate_interval_ms: String,
    rate_burst: String,
    consumer: String,
    wait_replicas: u32,
    last_claim: Mutex<Option<Instant>>,
    last_prune: Mutex<Option<Instant>>,
    /// Whether this consumer may hold entries it was given and has not released (a batch the
    /// store refused, or from before a restart): the next batch is read back from its own
    /// pending entries first, since a plain read only returns new ones.
    reread_own: AtomicBool,
}

/// The stored JSON around its seq: `{"id":…,"chatId":…,"seq":` and `,…}`. The script puts the
/// seq it assigns in between, so the node serializes a message once.
fn split_at_seq(json: &[u8]) -> EngineResult<(&[u8], &[u8])> {
    const MARK: &[u8] = b"\"seq\":0,";
    let at = json
        .windows(MARK.len())
        .position(|w| w == MARK)
        .ok_or_else(|| EngineError::Unavailable("message JSON without a seq".into()))?;
    Ok((&json[..at + MARK.len() - 2], &json[at + MARK.len() - 1..]))
}

fn decode(bytes: &[u8]) -> EngineResult<Message> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Unavailable(format!("corrupt message in redis: {e}")))
}

/// Stream entries as read: id, then (field, value) pairs (one: `m`, the message JSON).
type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// The seq of a chat log entry, from its id `<seq>-0`.
fn entry_seq(entry: &(String, Vec<(String, Vec<u8>)>)) -> Option<u64> {
    entry.0.split_once('-').and_then(|(seq, _)| seq.parse().ok())
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn bytes(value: Option<&Value>) -> Option<&[u8]> {
    match value? {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl RedisLog {
    pub fn new(redis: Redis, store: Arc<dyn Store>, options: &RedisOptions, presenter: Presenter) -> Self {
        RedisLog {
            redis,
            store,
            presenter,
            idempotency_ms: options.idempotency_window.as_millis().max(1).to_string(),
            recent: options.recent.max(1).to_string(),
            recent_ttl_ms: options.recent_ttl.as_millis().max(1).to_string(),
            rate_interval_ms: format!("{:.3}", 1000.0 / f64::from(options.messages_per_second.max(1))),
            rate_burst: options.message_burst.max(1).to_string(),
            consumer: options.node_id.clone(),
            wait_replicas: options.wait_replicas,
            last_claim: Mutex::new(None),
            last_prune: Mutex::new(None),
            reread_own: AtomicBool::new(true),
        }
    }

    /// Creates each shard's stream and consumer group when missing (first start, or a Redis that
    /// lost its data).
    pub async fn create_groups(&self) -> EngineResult<()> {
        for shard in 0..self.redis.keys.shards() {
            let mut create = redis::cmd("XGROUP");
            create.arg("CREATE").arg(self.redis.keys.stream(shard)).arg(GROUP).arg("0").arg("MKSTREAM");
            match self.redis.query::<()>(create).await {
                Ok(()) => {}
                Err(e) if e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn run_append(&self, req: &AppendRequest, message: &Message, seed: Option<u64>) -> EngineResult<Vec<Value>> {
        let stored = serde_json::to_vec(message).map_err(unavailable)?;
        let (head, tail) = split_at_seq(&stored)?;
        let shown_json = match message.attachment {
            Some(_) => {
                let mut shown = message.clone();
                (self.presenter)(&mut shown);
                serde_json::to_vec(&shown).map_err(unavailable)?
            }
            None => Vec::new(),
        };
        let (shown_head, shown_tail) =
            if shown_json.is_empty() { (&b""[..], &b""[..]) } else { split_at_seq(&shown_json)? };
        let keys = &self.redis.keys;
        let envelope = format!("M|{}|{}|", req.origin.unwrap_or(0), req.chat_id);
        let seed = seed.map(|s| s.to_string()).unwrap_or_default();
        let channels: Vec<String> = req.recipients.iter().map(|u| keys.user_channel(u)).collect();
        let mut args: Vec<&[u8]> = vec![
            head,
            tail,
            shown_head,
            shown_tail,
            self.idempotency_ms.as_bytes(),
            envelope.as_bytes(),
            seed.as_bytes(),
            self.rate_interval_ms.as_bytes(),
            self.rate_burst.as_bytes(),
        ];
        args.extend(channels.iter().map(|c| c.as_bytes()));
        let script_keys = [
            keys.send_rate(&req.chat_id, &req.sender_id),
            keys.seq(&req.chat_id),
            keys.idempotency(&req.chat_id, &req.sender_id, &req.client_msg_id),
            keys.stream_of_chat(&req.chat_id),
            keys.log(&req.chat_id),
            keys.pending(&req.chat_id),
        ];
        self.redis.script_replicated(&APPEND, &script_keys, &args, self.wait_replicas).await
    }

    /// The chat's last seq as the store knows it, for a counter Redis lost.
    async fn seed(&self, chat_id: &str) -> EngineResult<u64> {
        let chat = self.store.chat(chat_id).await.map_err(unavailable)?;
        let pending = self.pending(chat_id).await?;
        Ok(chat.map_or(0, |c| c.last_seq).max(pending.last().map_or(0, |m| m.seq)))
    }

    fn queued(&self, shard: u32, entry: &StreamId) -> Option<Queued> {
        let message = match entry.map.get("m") {
            Some(Value::BulkString(json)) => decode(json).ok(),
            _ => None,
        }?;
        let token = format!("{shard}/{}/{}/{}", entry.id, message.chat_id, message.seq);
        Some(Queued { token, message })
    }

    /// Entries that cannot be decoded are released at once, so they do not block the queue.
    async fn drop_corrupt(&self, shard: u32, id: &str) {
        tracing::error!(shard, id, "dropping an undecodable entry from the durable queue");
        let stream = self.redis.keys.stream(shard);
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(id).ignore();
        pipe.cmd("XDEL").arg(&stream).arg(id).ignore();
        let _ = self.redis.pipeline::<()>(pipe).await;
    }

    /// Entries of dead (or stuck) consumers, now this node's.
    async fn claim(&self, max: usize) -> EngineResult<Vec<Queued>> {
        {
            let mut last = self.last_claim.lock();
            if last.is_some_and(|at| at.elapsed() < CLAIM_EVERY) {
                return Ok(Vec::new());
            }
            *last = Some(Instant::now());
        }
        let mut out = Vec::new();
        for shard in 0..self.redis.keys.shards() {
            let mut claim = redis::cmd("XAUTOCLAIM");
            claim
                .arg(self.redis.keys.stream(shard))
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(CLAIM_IDLE.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max);
            let reply: StreamAutoClaimReply = self.redis.query(claim).await?;
            for entry in &reply.claimed {
                match self.queued(shard, entry) {
                    Some(q) => out.push(q),
                    None => self.drop_corrupt(shard, &entry.id).await,
                }
            }
        }
        if !out.is_empty() {
            tracing::info!(claimed = out.len(), "claimed queue entries another node left unreleased");
        }
        Ok(out)
    }

    /// Removes the group's consumers that hold nothing and have been idle for an hour.
    pub(super) async fn prune_consumers(&self) -> EngineResult<()> {
        {
            let mut last = self.last_prune.lock();
            if last.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        for shard in 0..self.redis.keys.shards() {
            let stream = self.redis.keys.stream(shard);
            let mut info = redis::cmd("XINFO");
            info.arg("CONSUMERS").arg(&stream).arg(GROUP);
            let reply: StreamInfoConsumersReply = self.redis.query(info).await?;
            for gone in reply.consumers.iter().filter(|c| {
                c.pending == 0 && c.idle as u128 > CONSUMER_GONE_AFTER.as_millis() && c.name != self.consumer
            }) {
                let mut delete = redis::cmd("XGROUP");
                delete.arg("DELCONSUMER").arg(&stream).arg(GROUP).arg(&gone.name);
                let _: i64 = self.redis.query(delete).await?;
                tracing::info!(consumer = %gone.name, shard, "removed an idle consumer of a node that is gone");
            }
        }
        Ok(())
    }

    async fn read_group(&self, max: usize, wait: Option<Duration>, own_pending: bool) -> EngineResult<Vec<Queued>> {
        let shards = self.redis.keys.shards();
        let mut read = redis::cmd("XREADGROUP");
        // COUNT is per stream: a read returns about `max` entries in all, the writer's batch size.
        let per_stream = max.div_ceil(shards as usize).max(1);
        read.arg("GROUP").arg(GROUP).arg(&self.consumer).arg("COUNT").arg(per_stream);
        // The multiplexed connection gives up on an answer after 500 ms: block for less.
        let wait = wait.map(|w| w.min(MAX_BLOCK));
        if let Some(wait) = wait {
            read.arg("BLOCK").arg(wait.as_millis().max(1) as u64);
        }
        read.arg("STREAMS");
        for shard in 0..shards {
            read.arg(self.redis.keys.stream(shard));
        }
        for _ in 0..shards {
            read.arg(if own_pending { "0" } else { ">" });
        }
        let deadline = self.redis.timeout() + wait.unwrap_or_default();
        let reply: Option<StreamReadReply> = self
            .redis
            .with_own_connection(deadline, |mut conn| async move { read.query_async(&mut conn).await })
            .await?;
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(shard) = (0..shards).find(|s| self.redis.keys.stream(*s) == key.key) else { continue };
            for entry in &key.ids {
                match self.queued(shard, entry) {
                    Some(q) => out.push(q),
                    None => self.drop_corrupt(shard, &entry.id).await,
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MessageLog for RedisLog {
    async fn append(&self, req: AppendRequest) -> EngineResult<Appended> {
        let mut message = req.message(0);
        let mut reply = self.run_append(&req, &message, None).await?;
        if int(reply.first()) == Some(-1) {
            let seed = self.seed(&req.chat_id).await?;
            reply = self.run_append(&req, &message, Some(seed)).await?;
        }
        let seq = int(reply.get(1)).and_then(|s| u64::try_from(s).ok());
        match (int(reply.first()), seq) {
            (Some(-2), Some(wait_ms)) => Err(EngineError::RateLimited(Duration::from_millis(wait_ms))),
            (Some(1), Some(seq)) => {
                message.seq = seq;
                Ok(Appended { message, duplicate: false })
            }
            (Some(0), Some(seq)) => {
                let first = match bytes(reply.get(2)).filter(|b| !b.is_empty()) {
                    Some(json) => decode(json)?,
                    None => history::stored_first(self.store.as_ref(), &req, seq).await?,
                };
                Ok(Appended { message: first, duplicate: true })
            }
            _ => Err(EngineError::Unavailable(format!("unexpected answer from the append script: {reply:?}"))),
        }
    }

    async fn pending(&self, chat_id: &str) -> EngineResult<Vec<Message>> {
        let mut seqs = redis::cmd("ZRANGE");
        seqs.arg(self.redis.keys.pending(chat_id)).arg(0).arg(-1);
        let seqs: Vec<u64> = self.redis.query(seqs).await?;
        let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else { return Ok(Vec::new()) };
        let mut range = redis::cmd("XRANGE");
        range.arg(self.redis.keys.log(chat_id)).arg(format!("{first}-0")).arg(format!("{last}-0"));
        let entries: Entries = self.redis.query(range).await?;
        let wanted: std::collections::HashSet<u64> = seqs.iter().copied().collect();
        entries
            .iter()
            .filter(|e| entry_seq(e).is_some_and(|seq| wanted.contains(&seq)))
            .filter_map(|(_, fields)| fields.first())
            .map(|(_, json)| decode(json))
            .collect()
    }

    async fn recent(&self, chat_id: &str, window: Window) -> EngineResult<Option<Vec<Message>>> {
        let key = self.redis.keys.log(chat_id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("XLEN").arg(&key);
        pipe.cmd("XRANGE").arg(&key).arg("-").arg("+").arg("COUNT").arg(1);
        pipe.cmd("XREVRANGE").arg(&key).arg("+").arg("-").arg("COUNT").arg(1);
        match window {
            Window::After { after, limit } => {
                pipe.cmd("XRANGE").arg(&key).arg(format!("({after}-0")).arg("+").arg("COUNT").arg(limit)
            }
            Window::Before { before, limit } => {
                let max = before.map_or_else(|| "+".to_owned(), |b| format!("({b}-0"));
                pipe.cmd("XREVRANGE").arg(&key).arg(max).arg("-").arg("COUNT").arg(limit)
            }
        };
        let (count, lowest, highest, items): (u64, Entries, Entries, Entries) = self.redis.pipeline(pipe).await?;
        let (Some(min), Some(max)) = (lowest.first().and_then(entry_seq), highest.first().and_then(entry_seq)) else {
            return Ok(None);
        };
        if count == 0 || max.checked_sub(min).map(|span| span + 1) != Some(count) {
            return Ok(None); // not a contiguous window (Redis lost part of it): ask the store
        }
        let mut messages = items
            .iter()
            .filter_map(|(_, fields)| fields.first())
            .map(|(_, json)| decode(json))
            .collect::<EngineResult<Vec<_>>>()?;
        let covered = match window {
            Window::After { after, .. } => after + 1 >= min || min == 1,
            Window::Before { limit, .. } => messages.len() >= limit || min == 1,
        };
        if !covered {
            return Ok(None);
        }
        if matches!(window, Window::Before { .. }) {
            messages.reverse();
        }
        Ok(Some(messages))
    }

    async fn next_batch(&self, max: usize, wait: Duration) -> EngineResult<Vec<Queued>> {
        let result = async {
            if self.reread_own.load(Ordering::SeqCst) {
                let own = self.read_group(max, None, true).await?;
                if !own.is_empty() {
                    return Ok(own);
                }
                self.reread_own.store(false, Ordering::SeqCst);
            }
            if let Err(e) = self.prune_consumers().await {
                tracing::debug!(error = %e, "pruning idle consumers failed");
            }
            let mut batch = self.claim(max).await?;
            if batch.is_empty() {
                batch = self.read_group(max, Some(wait), false).await?;
            }
            if !batch.is_empty() {
                self.reread_own.store(true, Ordering::SeqCst);
            }
            Ok::<_, EngineError>(batch)
        }
        .await;
        if let Err(e) = &result {
            if e.to_string().contains("NOGROUP") {
                // Redis lost the streams (restarted without persistence): make them again.
                let _ = self.create_groups().await;
            }
        }
        result
    }

    async fn release(&self, tokens: &[String]) -> EngineResult<()> {
        let mut by_shard: std::collections::BTreeMap<u32, Vec<(&str, &str, &str)>> = Default::default();
        for token in tokens {
            let mut parts = token.splitn(4, '/');
            if let (Some(shard), Some(id), Some(chat), Some(seq)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                if let Ok(shard) = shard.parse() {
                    by_shard.entry(shard).or_default().push((id, chat, seq));
                }
            }
        }
        for (shard, entries) in by_shard {
            // Each chat of the batch once, with its seqs.
            let mut by_chat: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
            for (_, chat, seq) in &entries {
                by_chat.entry(chat).or_default().push(seq);
            }
            let mut keys = vec![self.redis.keys.stream(shard)];
            for chat in by_chat.keys() {
                keys.push(self.redis.keys.pending(chat));
                keys.push(self.redis.keys.log(chat));
            }
            let ids = entries.len().to_string();
            let counts: Vec<String> = by_chat.values().map(|seqs| seqs.len().to_string()).collect();
            let mut args: Vec<&[u8]> =
                vec![GROUP.as_bytes(), self.recent.as_bytes(), self.recent_ttl_ms.as_bytes(), ids.as_bytes()];
            args.extend(entries.iter().map(|(id, _, _)| id.as_bytes()));
            for (seqs, count) in by_chat.values().zip(&counts) {
                args.push(count.as_bytes());
                args.extend(seqs.iter().map(|seq| seq.as_bytes()));
            }
            let _: i64 = self.redis.script(&RELEASE, &keys, &args).await?;
        }
        self.reread_own.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn backlog(&self) -> EngineResult<u64> {
        let mut pipe = redis::pipe();
        for shard in 0..self.redis.keys.shards() {
            pipe.cmd("XLEN").arg(self.redis.keys.stream(shard));
        }
        let lengths: Vec<u64> = self.redis.pipeline(pipe).await?;
        let total = lengths.iter().sum::<u64>();
        metrics::gauge!("coursechat_writebehind_queue_depth").set(total as f64);
        Ok(total)
    }

    async fn ping(&self) -> EngineResult<()> {
        self.redis.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seq_splits_out_of_the_stored_json() {
        let json = br#"{"id":"a","chatId":"b","seq":0,"senderId":"c"}"#;
        let (head, tail) = split_at_seq(json).unwrap();
        assert_eq!(head, br#"{"id":"a","chatId":"b","seq":"#);
        assert_eq!(tail, br#","senderId":"c"}"#);
        let joined = [head, b"42", tail].concat();
        assert_eq!(joined, br#"{"id":"a","chatId":"b","seq":42,"senderId":"c"}"#);
    }
}
