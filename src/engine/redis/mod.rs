//! The Redis engine: any number of nodes behind any load balancer behave as one server.
//!
//! - [`log`]: one Lua script and one round trip per send (rate limit, dedupe, seq, XADD to the
//!   shard's stream and to the chat's log, PUBLISH); persisters on every node read the streams
//!   through one consumer group.
//! - [`bus`]: per-user and per-chat pub/sub channels on one subscriber connection per node,
//!   resubscribed after Redis restarts; [`gaps`] fills what pub/sub lost from the recent window.
//! - [`presence`] and [`typing`]: sockets per user per node, node heartbeats, grace periods and
//!   typing deadlines as Redis state whose timers every node sweeps (each due timer claimed once).
//! - [`directory`]: the directory cache read through Redis, invalidated on every node.
//! - [`keys`]: the key and channel layout.
//!
//! Every call has a deadline (`CHAT_REDIS_TIMEOUT_MS`): when Redis is away, calls fail
//! `unavailable` instead of hanging, and the node recovers by itself when Redis returns.
//! docs/REDIS.md describes the key layout, the channels and the failure cases.

pub mod bus;
pub mod directory;
pub mod gaps;
pub mod keys;
pub mod log;
pub mod presence;
pub mod typing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::FromRedisValue;
use tokio::sync::mpsc;

use super::directory::{CacheTimes, CachedDirectory};
use super::{Engine, EngineError, EngineResult, Notice, Presenter, Timings};
use crate::hub::Hub;
use crate::store::Store;
use keys::Keys;

/// Everything the Redis engine is configured with.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub prefix: String,
    pub shards: u32,
    /// Messages per chat kept in the recent window.
    pub recent: u32,
    pub recent_ttl: Duration,
    pub pool: usize,
    /// Deadline of every Redis call (and of waiting for a pooled connection).
    pub timeout: Duration,
    pub node_id: String,
    /// A node silent this long is dead; the others clean up after it.
    pub node_dead_after: Duration,
    pub idempotency_window: Duration,
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Replicas that must have a send before it is acked (`WAIT`); 0 relies on the primary's
    /// own durability (AOF `appendfsync always`).
    pub wait_replicas: u32,
}

/// A node's handle on Redis: the pool, the key layout and the call deadline.
///
/// Calls share one multiplexed connection taken from the pool (commands from all tasks are
/// pipelined on it), because a pool checkout costs a round trip of its own (deadpool-redis
/// checks each connection with UNWATCH + PING when it hands it out). The shared connection is
/// dropped after any connection error or missed deadline, and the next call takes a fresh one from
/// the pool. Blocking reads ([`Redis::with_own_connection`]) check a connection out for
/// themselves, so they never hold up the shared one.
#[derive(Clone)]
pub struct Redis {
    pool: deadpool_redis::Pool,
    shared: Arc<parking_lot::Mutex<Option<MultiplexedConnection>>>,
    pub keys: Arc<Keys>,
    timeout: Duration,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("redis: {e}"))
}

fn late() -> EngineError {
    EngineError::Unavailable("redis: no answer in time".into())
}

impl Redis {
    pub fn connect(url: &str, prefix: &str, shards: u32, pool_size: usize, timeout: Duration) -> EngineResult<Self> {
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(deadpool_redis::PoolConfig {
            max_size: pool_size.max(2),
            timeouts: deadpool_redis::Timeouts { wait: Some(timeout), create: Some(timeout), recycle: Some(timeout) },
            ..Default::default()
        });
        let pool = config.create_pool(Some(deadpool_redis::Runtime::Tokio1)).map_err(unavailable)?;
        Ok(Redis { pool, shared: Default::default(), keys: Arc::new(Keys::new(prefix, shards)), timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn shared_connection(&self) -> EngineResult<MultiplexedConnection> {
        if let Some(conn) = self.shared.lock().clone() {
            return Ok(conn);
        }
        let pooled = self.pool.get().await.map_err(unavailable)?;
        // The clone shares the pooled connection; detaching keeps it out of the pool for good.
        let conn = deadpool_redis::Connection::take(pooled);
        *self.shared.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one Redis call on the shared connection within `deadline`.
    pub async fn with_deadline<T, F, Fut>(&self, deadline: Duration, call: F) -> EngineResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.shared_connection().await?;
            call(conn).await.map_err(|e| {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                    self.shared.lock().take();
                }
                unavailable(e)
            })
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => {
                self.shared.lock().take();
                Err(late())
            }
        }
    }

    /// Runs a blocking call on a connection checked out of the pool for it alone.
    pub async fn with_own_connection<T, F, Fut>(&self, deadline: Duration, call: F) -> EngineResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let pooled = self.pool.get().await.map_err(unavailable)?;
            let result = call((*pooled).clone()).await.map_err(unavailable);
            drop(pooled); // back to the pool only once the call is over
            result
        };
        tokio::time::timeout(deadline, work).await.unwrap_or_else(|_| Err(late()))
    }

    /// One command.
    pub async fn query<T: FromRedisValue + Send>(&self, cmd: redis::Cmd) -> EngineResult<T> {
        self.with_deadline(self.timeout, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Several commands in one round trip.
    pub async fn pipeline<T: FromRedisValue + Send>(&self, pipe: redis::Pipeline) -> EngineResult<T> {
        self.with_deadline(self.timeout, |mut conn| async move { pipe.query_async(&mut conn).await }).await
    }

    /// A Lua script by its SHA, loading it first when Redis does not know it (after a restart).
    pub async fn script<T: FromRedisValue + Send>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[&[u8]],
    ) -> EngineResult<T> {
        let invocation = invocation(script, keys, args);
        self.with_deadline(self.timeout, |mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// A script, then `WAIT replicas` on the same connection when `replicas` > 0: the call
    /// fails `unavailable` unless that many replicas have the script's writes.
    pub async fn script_replicated<T: FromRedisValue + Send>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[&[u8]],
        replicas: u32,
    ) -> EngineResult<T> {
        if replicas == 0 {
            return self.script(script, keys, args).await;
        }
        let invocation = invocation(script, keys, args);
        let wait_ms = (self.timeout.as_millis() as u64 * 3 / 4).max(1);
        let (value, acknowledged): (T, i64) = self
            .with_own_connection(self.timeout * 2, |mut conn| async move {
                let value: T = invocation.invoke_async(&mut conn).await?;
                let acknowledged: i64 = redis::cmd("WAIT").arg(replicas).arg(wait_ms).query_async(&mut conn).await?;
                Ok((value, acknowledged))
            })
            .await?;
        if acknowledged < i64::from(replicas) {
            return Err(unavailable(format!("{acknowledged} of {replicas} replicas acknowledged the write in time")));
        }
        Ok(value)
    }

    pub async fn ping(&self) -> EngineResult<()> {
        let pong: String = self.query(redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(unavailable(format!("PING answered {pong}")))
        }
    }
}

fn invocation<'a>(script: &'a redis::Script, keys: &[String], args: &[&[u8]]) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(*arg);
    }
    invocation
}

/// The engine's background tasks (subscriber, timers); a node keeps them for its whole life.
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    pub fn abort(&self) {
        self.0.iter().for_each(|t| t.abort());
    }
}

/// The node's Redis engine, with its background tasks started.
pub async fn start(
    options: RedisOptions,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    timings: Timings,
    presenter: Presenter,
) -> EngineResult<(Engine, mpsc::Receiver<Notice>, Tasks)> {
    let redis = Redis::connect(&options.url, &options.prefix, options.shards, options.pool, options.timeout)?;
    redis.ping().await.map_err(|e| EngineError::Unavailable(format!("{e} (CHAT_REDIS_URL {})", options.url)))?;
    let log = Arc::new(log::RedisLog::new(redis.clone(), store.clone(), &options, presenter.clone()));
    log.create_groups().await?;
    let cache = Arc::new(CachedDirectory::new(
        Arc::new(directory::SharedLookups::new(redis.clone(), store.clone())),
        CacheTimes::default(),
    ));
    let presence = Arc::new(presence::RedisPresence::new(
        redis.clone(),
        options.node_id.clone(),
        timings,
        options.node_dead_after,
        hub.clone(),
    ));
    let gaps = gaps::Gaps::new(hub.clone(), log.clone(), store, presenter);
    let bus = bus::RedisBus::new(redis.clone(), &options.url, hub, cache.clone(), gaps)?;
    presence.forget_previous_life().await?;
    let (notices_tx, notices) = mpsc::channel(4096);
    let tasks = Tasks(vec![
        tokio::spawn(bus.clone().run()),
        tokio::spawn(presence.clone().run_timers(log.clone(), notices_tx, bus.reconnected())),
    ]);
    // No socket is accepted before the node listens on pub/sub: its first events would be lost.
    if !bus.wait_subscribed(options.timeout * 5).await {
        tracing::warn!("the Redis subscriber is not connected yet; starting anyway (it keeps trying)");
    }
    let engine = Engine {
        kind: "redis",
        log,
        bus,
        presence,
        typing: Arc::new(typing::RedisTyping::new(redis.clone(), timings.typing_ttl)),
        // The send script checks the rate itself, in the same call.
        message_limiter: None,
        directory: Arc::new(directory::RedisDirectory::new(redis, cache)),
    };
    Ok((engine, notices, tasks))
}

/// Test support: a Redis engine's pieces against the Redis of `CHAT_TEST_REDIS_URL`
/// (default 127.0.0.1:6379), each test under its own key prefix, removed afterwards.
#[cfg(test)]
pub mod testing {
    use super::*;

    pub fn options(prefix: &str, node: &str) -> RedisOptions {
        RedisOptions {
            url: url(),
            prefix: prefix.to_owned(),
            shards: 4,
            recent: 50,
            recent_ttl: Duration::from_secs(600),
            pool: 4,
            timeout: Duration::from_secs(1),
            node_id: node.to_owned(),
            node_dead_after: Duration::from_secs(2),
            idempotency_window: Duration::from_secs(600),
            messages_per_second: 10,
            message_burst: 20,
            wait_replicas: 0,
        }
    }

    pub fn url() -> String {
        std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    pub fn prefix() -> String {
        format!("cctest-{}:", crate::model::ids::new_object_id())
    }

    /// A fresh prefix, and the guard that removes its keys.
    pub fn isolated() -> (String, PrefixGuard) {
        let prefix = prefix();
        (prefix.clone(), PrefixGuard(prefix))
    }

    /// Deletes every key under the prefix.
    pub async fn cleanup(_redis: &Redis, prefix: &str) {
        let prefix = prefix.to_owned();
        let _ = tokio::task::spawn_blocking(move || delete_prefix(&prefix)).await;
    }

    fn delete_prefix(prefix: &str) {
        let Ok(mut conn) = redis::Client::open(url()).and_then(|c| c.get_connection()) else { return };
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }

    /// Deletes the prefix's keys when dropped, also when the test panicked.
    pub struct PrefixGuard(pub String);

    impl Drop for PrefixGuard {
        fn drop(&mut self) {
            delete_prefix(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{contract_tests, Topic};
    use crate::engine::{AppendRequest, Invalidation};
    use crate::store::embedded::EmbeddedStore;

    fn fast() -> Timings {
        Timings { presence_grace: Duration::from_millis(400), typing_ttl: Duration::from_millis(400) }
    }

    struct Node {
        engine: Engine,
        notices: mpsc::Receiver<Notice>,
        tasks: Tasks,
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    async fn node(prefix: &str, name: &str) -> Node {
        node_with(testing::options(prefix, name)).await
    }

    async fn node_with(options: RedisOptions) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let hub = Hub::new();
        let (engine, notices, tasks) =
            start(options, hub.clone(), store.clone(), fast(), Arc::new(|_| {})).await.unwrap();
        Node { engine, notices, tasks, hub, store, _dir: dir }
    }

    async fn finish(nodes: &[&Node], prefix: &str) {
        for n in nodes {
            n.tasks.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let redis = Redis::connect(&testing::url(), prefix, 4, 2, Duration::from_secs(1)).unwrap();
        testing::cleanup(&redis, prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_log_passes_the_message_log_contract() {
        let (prefix, _guard) = testing::isolated();
        // The suite sends faster than a user may: the rate is the send script's, tested below.
        let mut options = testing::options(&prefix, "n1");
        options.messages_per_second = 1000;
        options.message_burst = 1000;
        let n = node_with(options).await;
        let bus = n.engine.bus.clone();
        let watch = move |user: String| {
            let bus = bus.clone();
            async move { bus.subscribe(&Topic::User(user)).await.unwrap() }
        };
        contract_tests::message_log_suite(n.engine.log.as_ref(), n.store.as_ref(), &n.hub, &watch).await;
        finish(&[&n], &prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_without_the_required_replicas_is_not_acked() {
        let (prefix, _guard) = testing::isolated();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut options = testing::options(&prefix, "n1");
        options.wait_replicas = 1; // the test Redis has none
        options.timeout = Duration::from_millis(300);
        let (engine, _notices, tasks) = start(options, Hub::new(), store, fast(), Arc::new(|_| {})).await.unwrap();
        let started = std::time::Instant::now();
        let req = AppendRequest {
            chat_id: crate::model::ids::new_object_id(),
            sender_id: "s".into(),
            sender_type: crate::model::SenderType::User,
            kind: Default::default(),
            content: "x".into(),
            attachment: None,
            client_msg_id: "m1".into(),
            recipients: vec![],
            origin: None,
        };
        let refused = engine.log.append(req).await.unwrap_err();
        assert!(refused.to_string().contains("replicas"), "{refused}");
        assert!(started.elapsed() < Duration::from_secs(1));
        tasks.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consumers_of_gone_nodes_are_pruned_but_recent_ones_stay() {
        let (prefix, _guard) = testing::isolated();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let redis = Redis::connect(&testing::url(), &prefix, 4, 2, Duration::from_secs(1)).unwrap();
        let log = log::RedisLog::new(redis.clone(), store, &testing::options(&prefix, "n1"), Arc::new(|_| {}));
        log.create_groups().await.unwrap();
        let mut create = ::redis::cmd("XGROUP");
        create.arg("CREATECONSUMER").arg(redis.keys.stream(0)).arg("writers").arg("just-started");
        let _: i64 = redis.query(create).await.unwrap();
        log.prune_consumers().await.unwrap();
        let mut info = ::redis::cmd("XINFO");
        info.arg("CONSUMERS").arg(redis.keys.stream(0)).arg("writers");
        let reply: ::redis::streams::StreamInfoConsumersReply = redis.query(info).await.unwrap();
        assert_eq!(reply.consumers.len(), 1, "an idle-for-seconds consumer stays");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_presence_and_typing_pass_their_contracts() {
        let (prefix, _guard) = testing::isolated();
        let mut n = node(&prefix, "n1").await;
        contract_tests::presence_suite(n.engine.presence.as_ref(), &mut n.notices, fast().presence_grace * 2).await;
        contract_tests::typing_suite(n.engine.typing.as_ref(), &mut n.notices, fast().typing_ttl * 2).await;
        finish(&[&n], &prefix).await;
    }

    fn rate_test_send(chat: &str, sender: &str, client_msg_id: &str) -> AppendRequest {
        AppendRequest {
            chat_id: chat.to_owned(),
            sender_id: sender.to_owned(),
            sender_type: crate::model::SenderType::User,
            kind: Default::default(),
            content: "x".into(),
            attachment: None,
            client_msg_id: client_msg_id.to_owned(),
            recipients: vec![],
            origin: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn presence_and_limits_hold_across_nodes() {
        let (prefix, _guard) = testing::isolated();
        let mut a = node(&prefix, "a").await;
        let mut b = node(&prefix, "b").await;
        let user = crate::model::ids::new_object_id();
        assert!(a.engine.presence.connected(&user).await.unwrap());
        assert!(!b.engine.presence.connected(&user).await.unwrap(), "a second device on another node");
        a.engine.presence.disconnected(&user).await.unwrap();
        tokio::time::sleep(fast().presence_grace * 3).await;
        assert_eq!(b.engine.presence.online(std::slice::from_ref(&user)).await.unwrap(), vec![true]);
        // The send script's allowance is shared: a burst spent on one node is spent on the other.
        let chat = crate::model::ids::new_object_id();
        for i in 0..20 {
            a.engine.log.append(rate_test_send(&chat, &user, &format!("m{i}"))).await.unwrap();
        }
        let refused = b.engine.log.append(rate_test_send(&chat, &user, "over")).await.unwrap_err();
        assert!(matches!(refused, EngineError::RateLimited(retry) if retry <= Duration::from_secs(1)), "{refused}");
        let other = crate::model::ids::new_object_id();
        b.engine.log.append(rate_test_send(&other, &other, "m0")).await.expect("senders are independent");
        b.engine.presence.disconnected(&user).await.unwrap();
        // Whichever node sweeps first announces it, once.
        let offline = tokio::time::timeout(Duration::from_secs(3), async {
            tokio::select! { n = a.notices.recv() => n, n = b.notices.recv() => n }
        })
        .await
        .unwrap()
        .unwrap();
        assert!(matches!(offline, Notice::Offline { user: ref u, .. } if *u == user));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(a.notices.try_recv().is_err() && b.notices.try_recv().is_err(), "announced once");
        finish(&[&a, &b], &prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_bus_passes_the_bus_contract() {
        let (prefix, _guard) = testing::isolated();
        let listener = node(&prefix, "a").await;
        let publisher = node(&prefix, "b").await;
        tokio::time::sleep(Duration::from_millis(300)).await; // subscribers connected
        contract_tests::bus_suite(publisher.engine.bus.as_ref(), listener.engine.bus.as_ref(), &listener.hub).await;
        finish(&[&listener, &publisher], &prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_directory_passes_the_directory_contract() {
        let (prefix, _guard) = testing::isolated();
        let n = node(&prefix, "a").await;
        contract_tests::directory_suite(n.engine.directory.as_ref(), n.store.as_ref()).await;
        finish(&[&n], &prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_nodes_users_go_offline() {
        let (prefix, _guard) = testing::isolated();
        let a = node(&prefix, "a").await;
        let mut b = node(&prefix, "b").await;
        let user = crate::model::ids::new_object_id();
        assert!(a.engine.presence.connected(&user).await.unwrap());
        a.tasks.abort(); // node a stops beating without a goodbye
        let started = std::time::Instant::now();
        let notice = tokio::time::timeout(Duration::from_secs(8), b.notices.recv()).await.unwrap().unwrap();
        assert!(matches!(notice, Notice::Offline { user: ref u, .. } if *u == user), "{notice:?}");
        assert!(started.elapsed() >= Duration::from_secs(1), "not before the node counts as dead");
        assert_eq!(b.engine.presence.online(std::slice::from_ref(&user)).await.unwrap(), vec![false]);
        finish(&[&a, &b], &prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalidations_reach_every_node_within_a_second() {
        let (prefix, _guard) = testing::isolated();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (a, _na, ta) =
            start(testing::options(&prefix, "a"), Hub::new(), store.clone(), fast(), Arc::new(|_| {})).await.unwrap();
        let (b, _nb, tb) =
            start(testing::options(&prefix, "b"), Hub::new(), store.clone(), fast(), Arc::new(|_| {})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await; // subscribers connected
        let user = crate::model::ids::new_object_id();
        // Node b caches "not enrolled", locally and in Redis.
        assert!(!b.directory.is_enrolled(&user, "c1").await.unwrap());
        let enrollment = crate::model::Enrollment {
            user_id: user.clone(),
            course_id: "c1".into(),
            purchased_at: crate::model::time::Timestamp::now(),
        };
        store.put_enrollment(&enrollment).await.unwrap();
        a.directory.invalidate(Invalidation::Enrollment { user: user.clone(), course: "c1".into() }).await.unwrap();
        let started = std::time::Instant::now();
        while !b.directory.is_enrolled(&user, "c1").await.unwrap() {
            assert!(started.elapsed() < Duration::from_secs(1), "node b still serves the old answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And back: a revocation reaches b the same way.
        store.delete_enrollment(&user, "c1").await.unwrap();
        a.directory.invalidate(Invalidation::Enrollment { user: user.clone(), course: "c1".into() }).await.unwrap();
        let started = std::time::Instant::now();
        while b.directory.is_enrolled(&user, "c1").await.unwrap() {
            assert!(started.elapsed() < Duration::from_secs(1), "node b still serves the revoked enrollment");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ta.abort();
        tb.abort();
        let redis = Redis::connect(&testing::url(), &prefix, 4, 2, Duration::from_secs(1)).unwrap();
        testing::cleanup(&redis, &prefix).await;
    }
}
