//! Rate limits shared by every node (GCRA in one script): a user's allowance is the same however
//! many nodes their sockets are spread over.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::Redis;
use crate::engine::{EngineResult, RateLimiter};

static RATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rate.lua")));

pub struct RedisLimiter {
    redis: Redis,
    interval_ms: String,
    burst: String,
}

impl RedisLimiter {
    pub fn new(redis: Redis, per_second: u32, burst: u32) -> Self {
        let interval = 1000.0 / f64::from(per_second.max(1));
        RedisLimiter { redis, interval_ms: format!("{interval:.3}"), burst: burst.max(1).to_string() }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str) -> EngineResult<Result<(), Duration>> {
        let args: [&[u8]; 2] = [self.interval_ms.as_bytes(), self.burst.as_bytes()];
        let wait_ms: i64 = self.redis.script(&RATE, &[self.redis.keys.rate(key)], &args).await?;
        Ok(if wait_ms <= 0 { Ok(()) } else { Err(Duration::from_millis(wait_ms as u64)) })
    }
}
