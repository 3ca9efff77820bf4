//! The directory with the Redis engine: each node's in-process cache reads through a cache in
//! Redis shared by all nodes, which reads through the store. An admin change deletes the Redis
//! entry and announces the change on the invalidation channel, so every node forgets its own
//! copy within a pub/sub round trip (a node that was away from pub/sub forgets everything when it
//! is back, see the fan-out).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Redis;
use crate::engine::directory::{CachedDirectory, Lookups};
use crate::engine::{Directory, EngineResult, Invalidation};
use crate::model::{Chat, Course};
use crate::store::{Store, StoreError};

/// How long an entry lives in the Redis cache without an invalidation.
const SHARED_TTL: Duration = Duration::from_secs(300);

/// Lookups through the Redis cache. When Redis fails the store answers directly: a Redis outage
/// never turns a lookup the store can answer into an error.
pub struct SharedLookups {
    redis: Redis,
    store: Arc<dyn Store>,
}

impl SharedLookups {
    pub fn new(redis: Redis, store: Arc<dyn Store>) -> Self {
        SharedLookups { redis, store }
    }

    async fn cached(&self, key: &str) -> Option<Vec<u8>> {
        let mut get = redis::cmd("GET");
        get.arg(key);
        self.redis.query::<Option<Vec<u8>>>(get).await.ok().flatten()
    }

    async fn remember(&self, key: &str, value: &[u8]) {
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value).arg("EX").arg(SHARED_TTL.as_secs());
        if let Err(e) = self.redis.query::<()>(set).await {
            tracing::debug!(error = %e, "could not fill the shared directory cache");
        }
    }

    async fn flag(
        &self,
        key: String,
        load: impl std::future::Future<Output = Result<bool, StoreError>>,
    ) -> Result<bool, StoreError> {
        if let Some(v) = self.cached(&key).await {
            return Ok(v == b"1");
        }
        let value = load.await?;
        self.remember(&key, if value { b"1" } else { b"0" }).await;
        Ok(value)
    }
}

#[async_trait]
impl Lookups for SharedLookups {
    async fn chat(&self, id: &str) -> Result<Option<Chat>, StoreError> {
        let key = self.redis.keys.dir_chat(id);
        if let Some(chat) = self.cached(&key).await.and_then(|json| serde_json::from_slice(&json).ok()) {
            return Ok(Some(chat));
        }
        let chat = self.store.chat(id).await?;
        // Only chats that exist are shared: one that does not may be created any moment.
        if let Some(json) = chat.as_ref().and_then(|c| serde_json::to_vec(c).ok()) {
            self.remember(&key, &json).await;
        }
        Ok(chat)
    }

    async fn course(&self, id: &str) -> Result<Option<Course>, StoreError> {
        let key = self.redis.keys.dir_course(id);
        if let Some(course) = self.cached(&key).await.and_then(|json| serde_json::from_slice(&json).ok()) {
            return Ok(course);
        }
        let course = self.store.course(id).await?;
        if let Ok(json) = serde_json::to_vec(&course) {
            self.remember(&key, &json).await;
        }
        Ok(course)
    }

    async fn is_enrolled(&self, user: &str, course: &str) -> Result<bool, StoreError> {
        let load = async { Ok(self.store.enrollment(user, course).await?.is_some()) };
        self.flag(self.redis.keys.dir_enrolled(user, course), load).await
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        self.flag(self.redis.keys.dir_blocked(blocker, blocked), self.store.is_blocked(blocker, blocked)).await
    }
}

/// The wire form of an invalidation on the invalidation channel.
pub fn encode_invalidation(change: &Invalidation) -> String {
    match change {
        Invalidation::Enrollment { user, course } => format!("E\n{user}\n{course}"),
        Invalidation::Course(id) => format!("C\n{id}"),
        Invalidation::Block { blocker, blocked } => format!("B\n{blocker}\n{blocked}"),
    }
}

pub fn decode_invalidation(text: &str) -> Option<Invalidation> {
    let mut parts = text.split('\n');
    let change = match (parts.next()?, parts.next()?, parts.next()) {
        ("E", user, Some(course)) => Invalidation::Enrollment { user: user.to_owned(), course: course.to_owned() },
        ("C", id, None) => Invalidation::Course(id.to_owned()),
        ("B", blocker, Some(blocked)) => {
            Invalidation::Block { blocker: blocker.to_owned(), blocked: blocked.to_owned() }
        }
        _ => return None,
    };
    Some(change)
}

pub struct RedisDirectory {
    redis: Redis,
    cache: Arc<CachedDirectory>,
}

impl RedisDirectory {
    pub fn new(redis: Redis, cache: Arc<CachedDirectory>) -> Self {
        RedisDirectory { redis, cache }
    }
}

#[async_trait]
impl Directory for RedisDirectory {
    async fn chat(&self, id: &str) -> EngineResult<Option<Chat>> {
        self.cache.chat(id).await
    }

    async fn course(&self, id: &str) -> EngineResult<Option<Course>> {
        self.cache.course(id).await
    }

    async fn is_enrolled(&self, user: &str, course: &str) -> EngineResult<bool> {
        self.cache.is_enrolled(user, course).await
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> EngineResult<bool> {
        self.cache.is_blocked(blocker, blocked).await
    }

    /// Deletes the shared entry and tells every node (this one included) to forget its copy.
    /// Fails `unavailable` when Redis is away, so the caller's change is reported as not fully
    /// applied and can be retried.
    async fn invalidate(&self, change: Invalidation) -> EngineResult<()> {
        self.cache.forget(&change);
        let keys = &self.redis.keys;
        let key = match &change {
            Invalidation::Enrollment { user, course } => keys.dir_enrolled(user, course),
            Invalidation::Course(id) => keys.dir_course(id),
            Invalidation::Block { blocker, blocked } => keys.dir_blocked(blocker, blocked),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(key).ignore();
        pipe.cmd("PUBLISH").arg(keys.invalidation_channel()).arg(encode_invalidation(&change)).ignore();
        self.redis.pipeline::<()>(pipe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_round_trip() {
        for change in [
            Invalidation::Enrollment { user: "u".into(), course: "c".into() },
            Invalidation::Course("c".into()),
            Invalidation::Block { blocker: "a".into(), blocked: "b".into() },
        ] {
            assert_eq!(decode_invalidation(&encode_invalidation(&change)), Some(change));
        }
        assert_eq!(decode_invalidation("X\n1"), None);
    }
}
