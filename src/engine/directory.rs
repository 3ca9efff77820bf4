//! The directory: the lookups of every send, join and typing event (a chat's participants, its
//! course's tutors, the student's enrollment, blocks), and the cache in front of them that both
//! engines use. The cache reads through [`Lookups`]: the store itself in the in-process engine,
//! the store behind a Redis cache shared by all nodes in the Redis engine.
//!
//! Entries are fresh for `fresh` (30 s); after that the store is asked again, and when the store
//! fails, an entry up to `stale_if_error` old (15 min) is served instead, so sends keep working
//! through a store outage. Every admin or block change invalidates its entry at once, so on one
//! node a revocation holds from the next send. Each map holds at most `capacity` entries;
//! a full map first drops expired entries, then the oldest half.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{EngineError, EngineResult};
use crate::model::{Chat, Course};
use crate::store::StoreError;

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

/// Where the cache reads what it does not hold.
#[async_trait]
pub trait Lookups: Send + Sync + 'static {
    async fn chat(&self, id: &str) -> Result<Option<Chat>, StoreError>;
    async fn course(&self, id: &str) -> Result<Option<Course>, StoreError>;
    async fn is_enrolled(&self, user: &str, course: &str) -> Result<bool, StoreError>;
    async fn is_blocked(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError>;
}

#[derive(Debug, Clone, Copy)]
pub struct CacheTimes {
    pub fresh: Duration,
    pub stale_if_error: Duration,
    pub capacity: usize,
}

impl Default for CacheTimes {
    fn default() -> Self {
        CacheTimes { fresh: Duration::from_secs(30), stale_if_error: Duration::from_secs(15 * 60), capacity: 100_000 }
    }
}

/// One bounded map of cached answers.
struct Cache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    times: CacheTimes,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    fn new(times: CacheTimes) -> Self {
        Cache { entries: Mutex::new(HashMap::new()), times }
    }

    /// The cached value if it is fresh.
    fn fresh(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock();
        let (value, at) = entries.get(key)?;
        (at.elapsed() < self.times.fresh).then(|| value.clone())
    }

    /// The cached value if it may still stand in for a failing store.
    fn stale(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock();
        let (value, at) = entries.get(key)?;
        (at.elapsed() < self.times.stale_if_error).then(|| value.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock();
        if entries.len() >= self.times.capacity && !entries.contains_key(&key) {
            let limit = self.times.stale_if_error;
            entries.retain(|_, (_, at)| at.elapsed() < limit);
            if entries.len() >= self.times.capacity {
                let mut ages: Vec<Instant> = entries.values().map(|(_, at)| *at).collect();
                ages.sort();
                let cutoff = ages[ages.len() / 2];
                entries.retain(|_, (_, at)| *at > cutoff);
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    fn forget(&self, key: &K) {
        self.entries.lock().remove(key);
    }

    fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Read-through: fresh cache, else the store, else (store failing) a stale entry.
    async fn get<F>(&self, key: K, load: F) -> EngineResult<V>
    where
        F: std::future::Future<Output = Result<V, StoreError>>,
    {
        if let Some(v) = self.fresh(&key) {
            return Ok(v);
        }
        match load.await {
            Ok(v) => {
                self.put(key, v.clone());
                Ok(v)
            }
            Err(e) => self.stale(&key).ok_or_else(|| EngineError::Unavailable(e.to_string())),
        }
    }
}

pub struct CachedDirectory {
    source: Arc<dyn Lookups>,
    chats: Cache<String, Option<Chat>>,
    courses: Cache<String, Option<Course>>,
    enrollments: Cache<(String, String), bool>,
    blocks: Cache<(String, String), bool>,
}

impl CachedDirectory {
    pub fn new(source: Arc<dyn Lookups>, times: CacheTimes) -> Self {
        CachedDirectory {
            source,
            chats: Cache::new(times),
            courses: Cache::new(times),
            enrollments: Cache::new(times),
            blocks: Cache::new(times),
        }
    }

    /// Forgets on this node what a change made stale.
    pub fn forget(&self, change: &Invalidation) {
        match change {
            Invalidation::Enrollment { user, course } => self.enrollments.forget(&(user.clone(), course.clone())),
            Invalidation::Course(id) => self.courses.forget(id),
            Invalidation::Block { blocker, blocked } => self.blocks.forget(&(blocker.clone(), blocked.clone())),
        }
    }

    /// Forgets everything but chats (whose participants never change): after this node may have
    /// missed invalidations.
    pub fn forget_all(&self) {
        self.courses.clear();
        self.enrollments.clear();
        self.blocks.clear();
    }
}

#[async_trait]
impl Directory for CachedDirectory {
    async fn chat(&self, id: &str) -> EngineResult<Option<Chat>> {
        // Participants and course never change, so a found chat stays valid; only the absence
        // of a chat is re-checked (it may be created meanwhile).
        if let Some(Some(chat)) = self.chats.stale(&id.to_owned()) {
            return Ok(Some(chat));
        }
        self.chats.get(id.to_owned(), self.source.chat(id)).await
    }

    async fn course(&self, id: &str) -> EngineResult<Option<Course>> {
        self.courses.get(id.to_owned(), self.source.course(id)).await
    }

    async fn is_enrolled(&self, user: &str, course: &str) -> EngineResult<bool> {
        self.enrollments.get((user.to_owned(), course.to_owned()), self.source.is_enrolled(user, course)).await
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> EngineResult<bool> {
        self.blocks.get((blocker.to_owned(), blocked.to_owned()), self.source.is_blocked(blocker, blocked)).await
    }

    async fn invalidate(&self, change: Invalidation) -> EngineResult<()> {
        self.forget(&change);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn serves_fresh_then_reloads_then_serves_stale_only_while_the_store_fails() {
        let cache: Cache<&str, u32> = Cache::new(CacheTimes {
            fresh: Duration::from_secs(1),
            stale_if_error: Duration::from_secs(10),
            capacity: 8,
        });
        assert_eq!(cache.get("k", async { Ok(1) }).await.unwrap(), 1);
        assert_eq!(cache.get("k", async { Ok(2) }).await.unwrap(), 1, "fresh: the store is not asked");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get("k", async { Ok(3) }).await.unwrap(), 3, "expired: reloaded");
        tokio::time::advance(Duration::from_secs(2)).await;
        let down = || async { Err::<u32, _>(StoreError::Unavailable("down".into())) };
        assert_eq!(cache.get("k", down()).await.unwrap(), 3, "store failing: the stale entry stands in");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(cache.get("k", down()).await.is_err(), "too stale to stand in");
        cache.forget(&"k");
        assert!(cache.get("k", down()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stays_within_its_capacity() {
        let cache: Cache<u32, u32> = Cache::new(CacheTimes {
            fresh: Duration::from_secs(1),
            stale_if_error: Duration::from_secs(10),
            capacity: 4,
        });
        for i in 0..100 {
            cache.put(i, i);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert!(cache.entries.lock().len() <= 4);
        assert_eq!(cache.fresh(&99), Some(99), "the newest entries stay");
    }
}
