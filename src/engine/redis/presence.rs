//! Presence across nodes, and the timers of presence and typing.
//!
//! Each user's sockets are counted per node in a hash; a user is online while any node counts a
//! socket, or during the grace period after the last one closed (the leaving set).
//!
//! Timers: every node sweeps every shard twice a second, for ended grace periods and for typing
//! states past their deadline ([`typing`](super::typing)); the sweep script removes what it
//! returns, so each expiry is announced by exactly one node. Nodes beat into the live-nodes set
//! every [`HEARTBEAT`]; a node silent for `CHAT_NODE_DEAD_AFTER` (10 s) is dead, and the first
//! survivor to notice removes its sockets: its users go offline within dead-after + 2.5 s.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use tokio::sync::mpsc;

use super::Redis;
use tokio::sync::Notify;

use crate::engine::{EngineResult, MessageLog, Notice, Presence, Timings};
use crate::hub::Hub;
use crate::model::time::Timestamp;

static CONNECTED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/connected.lua")));
static DISCONNECTED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/disconnected.lua")));
static NODE_GONE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/node_gone.lua")));
static BEAT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/sweep.lua")));

const SWEEP_EVERY: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How often a node rewrites its share of presence from its own sockets (it also does after
/// every reconnection to Redis), repairing counts that a failed call left wrong.
const REASSERT_EVERY: Duration = Duration::from_secs(60);

pub struct RedisPresence {
    redis: Redis,
    node: String,
    grace_ms: String,
    dead_after: Duration,
    hub: Arc<Hub>,
}

impl RedisPresence {
    pub fn new(redis: Redis, node: String, timings: Timings, dead_after: Duration, hub: Arc<Hub>) -> Self {
        RedisPresence { redis, node, grace_ms: timings.presence_grace.as_millis().to_string(), dead_after, hub }
    }

    /// Removes what an earlier process with this node id left (a restart under the same
    /// `CHAT_NODE_ID` before the others noticed it was gone).
    pub async fn forget_previous_life(&self) -> EngineResult<()> {
        self.node_gone(&self.node, Timestamp::now().millis()).await
    }

    async fn node_gone(&self, node: &str, last_seen_ms: i64) -> EngineResult<()> {
        let keys = &self.redis.keys;
        let last_seen = last_seen_ms.to_string();
        let mut users = 0;
        for shard in 0..keys.shards() {
            let script_keys = [keys.node_users(shard, node), keys.leaving(shard), keys.last_seen(shard)];
            let prefix = keys.presence_prefix(shard);
            let args: [&[u8]; 3] = [node.as_bytes(), last_seen.as_bytes(), prefix.as_bytes()];
            users += self.redis.script::<i64>(&NODE_GONE, &script_keys, &args).await?;
        }
        let mut forget = redis::cmd("ZREM");
        forget.arg(keys.nodes()).arg(node);
        let _: i64 = self.redis.query(forget).await?;
        if node != self.node {
            tracing::warn!(node, users, "a node stopped beating: its sockets are gone from presence");
            metrics::counter!("coursechat_dead_nodes_cleaned_total").increment(1);
        }
        Ok(())
    }

    /// Makes Redis count exactly this node's sockets: after Redis lost its data, or a call
    /// failed while it was away.
    pub async fn reassert(&self) -> EngineResult<()> {
        let keys = &self.redis.keys;
        let local: HashMap<String, usize> = self.hub.local_users().into_iter().collect();
        let mut recorded = Vec::new();
        for shard in 0..keys.shards() {
            let mut members = redis::cmd("SMEMBERS");
            members.arg(keys.node_users(shard, &self.node));
            let users: Vec<String> = self.redis.query(members).await?;
            recorded.extend(users);
        }
        for user in recorded.iter().filter(|u| !local.contains_key(*u)) {
            self.leave(user, "all").await?;
        }
        for chunk in local.iter().collect::<Vec<_>>().chunks(500) {
            let mut pipe = redis::pipe();
            for (user, count) in chunk {
                let shard = keys.shard_of(user);
                pipe.cmd("HSET").arg(keys.presence(user)).arg(&self.node).arg(**count).ignore();
                pipe.cmd("SADD").arg(keys.node_users(shard, &self.node)).arg(*user).ignore();
                pipe.cmd("ZREM").arg(keys.leaving(shard)).arg(*user).ignore();
            }
            self.redis.pipeline::<()>(pipe).await?;
        }
        Ok(())
    }

    async fn leave(&self, user: &str, how_many: &str) -> EngineResult<()> {
        let keys = &self.redis.keys;
        let shard = keys.shard_of(user);
        let script_keys =
            [keys.presence(user), keys.node_users(shard, &self.node), keys.leaving(shard), keys.last_seen(shard)];
        let args: [&[u8]; 4] = [self.node.as_bytes(), user.as_bytes(), self.grace_ms.as_bytes(), how_many.as_bytes()];
        let _: i64 = self.redis.script(&DISCONNECTED, &script_keys, &args).await?;
        Ok(())
    }

    /// Due typing expiries and offline users of every shard, each claimed by this node alone.
    async fn sweep(&self) -> EngineResult<Vec<Notice>> {
        let keys = &self.redis.keys;
        let mut notices = Vec::new();
        for shard in 0..keys.shards() {
            let script_keys =
                [keys.typing_due(shard), keys.typing_origin(shard), keys.leaving(shard), keys.last_seen(shard)];
            let prefix = keys.presence_prefix(shard);
            let flat: Vec<String> = self.redis.script(&SWEEP, &script_keys, &[prefix.as_bytes()]).await?;
            for item in flat.chunks_exact(3) {
                match item[0].as_str() {
                    "T" => {
                        if let Some((chat_id, user)) = item[1].split_once('\n') {
                            notices.push(Notice::TypingExpired {
                                chat_id: chat_id.to_owned(),
                                user: user.to_owned(),
                                origin: item[2].parse().unwrap_or(0),
                            });
                        }
                    }
                    _ => notices.push(Notice::Offline {
                        user: item[1].clone(),
                        last_seen: Timestamp(item[2].parse().unwrap_or_else(|_| Timestamp::now().millis())),
                    }),
                }
            }
        }
        Ok(notices)
    }

    /// Beats, and cleans up after the nodes that stopped.
    async fn heartbeat(&self) -> EngineResult<()> {
        let dead_after = self.dead_after.as_millis().to_string();
        let args: [&[u8]; 2] = [self.node.as_bytes(), dead_after.as_bytes()];
        let dead: Vec<String> = self.redis.script(&BEAT, &[self.redis.keys.nodes()], &args).await?;
        for pair in dead.chunks_exact(2) {
            if pair[0] != self.node {
                let last = pair[1].parse::<f64>().map_or_else(|_| Timestamp::now().millis(), |ms| ms as i64);
                self.node_gone(&pair[0], last).await?;
            }
        }
        Ok(())
    }

    /// The node's presence and typing timers, until the notice receiver is dropped. Presence is
    /// rewritten every [`REASSERT_EVERY`], and at once when `reconnected` is told.
    pub async fn run_timers(
        self: Arc<Self>,
        log: Arc<dyn MessageLog>,
        notices: mpsc::Sender<Notice>,
        reconnected: Arc<Notify>,
    ) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = tokio::time::Instant::now() - HEARTBEAT;
        let mut last_reassert = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = reconnected.notified() => {
                    last_reassert = tokio::time::Instant::now();
                    if let Err(e) = self.reassert().await {
                        tracing::warn!(error = %e, "rewriting this node's presence failed");
                    }
                    continue;
                }
            }
            match self.sweep().await {
                Ok(due) => {
                    for notice in due {
                        if notices.send(notice).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "presence sweep failed"),
            }
            if last_beat.elapsed() >= HEARTBEAT {
                last_beat = tokio::time::Instant::now();
                if let Err(e) = self.heartbeat().await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                let _ = log.backlog().await; // refreshes the backlog gauge
            }
            if last_reassert.elapsed() >= REASSERT_EVERY {
                last_reassert = tokio::time::Instant::now();
                if let Err(e) = self.reassert().await {
                    tracing::warn!(error = %e, "rewriting this node's presence failed");
                }
            }
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn connected(&self, user: &str) -> EngineResult<bool> {
        let keys = &self.redis.keys;
        let shard = keys.shard_of(user);
        let script_keys = [keys.presence(user), keys.node_users(shard, &self.node), keys.leaving(shard)];
        let args: [&[u8]; 2] = [self.node.as_bytes(), user.as_bytes()];
        let came_online: i64 = self.redis.script(&CONNECTED, &script_keys, &args).await?;
        Ok(came_online == 1)
    }

    async fn disconnected(&self, user: &str) -> EngineResult<()> {
        self.leave(user, "one").await
    }

    async fn online(&self, users: &[String]) -> EngineResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.redis.keys;
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("EXISTS").arg(keys.presence(user));
            pipe.cmd("ZSCORE").arg(keys.leaving(keys.shard_of(user))).arg(user);
        }
        // Per user: whether a node counts a socket, and whether the user is in the grace period.
        let flat: Vec<redis::Value> = self.redis.pipeline(pipe).await?;
        Ok(flat
            .chunks_exact(2)
            .map(|pair| matches!(pair[0], redis::Value::Int(1)) || !matches!(pair[1], redis::Value::Nil))
            .collect())
    }
}
