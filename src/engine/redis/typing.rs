//! Typing across nodes: a key with a TTL per (chat, user), plus a deadline in the shard's
//! typing-due set that the presence timers sweep ([`presence`](super::presence)), so an expiry is
//! announced by exactly one node.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::Redis;
use crate::engine::{EngineResult, Typing};
use crate::hub::SocketId;

static TYPING_START: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/typing_start.lua")));
static TYPING_STOP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/typing_stop.lua")));

pub struct RedisTyping {
    redis: Redis,
    ttl_ms: String,
}

impl RedisTyping {
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        RedisTyping { redis, ttl_ms: ttl.as_millis().max(1).to_string() }
    }

    fn keys(&self, chat_id: &str, user: &str) -> [String; 3] {
        let keys = &self.redis.keys;
        let shard = keys.shard_of(chat_id);
        [keys.typing(chat_id, user), keys.typing_due(shard), keys.typing_origin(shard)]
    }
}

#[async_trait]
impl Typing for RedisTyping {
    async fn start(&self, chat_id: &str, user: &str, origin: SocketId) -> EngineResult<bool> {
        let member = format!("{chat_id}\n{user}");
        let origin = origin.to_string();
        let args: [&[u8]; 3] = [origin.as_bytes(), self.ttl_ms.as_bytes(), member.as_bytes()];
        let new: i64 = self.redis.script(&TYPING_START, &self.keys(chat_id, user), &args).await?;
        Ok(new == 1)
    }

    async fn stop(&self, chat_id: &str, user: &str) -> EngineResult<bool> {
        let member = format!("{chat_id}\n{user}");
        let had: i64 = self.redis.script(&TYPING_STOP, &self.keys(chat_id, user), &[member.as_bytes()]).await?;
        Ok(had == 1)
    }
}
