//! The node: one process of a deployment. [`Node::start`] builds it from the configuration (the
//! store, the engine, the chat rules, the hub, token verification, the audit log, the
//! write-behind writer); every request and socket then shares it.
//!
//! The node pairs the hub with the bus, in one place. A socket connects, joins a chat's room,
//! leaves it or disconnects through the node: the hub records the change and says whether the
//! socket was the first or the last of its user or room on this node, and only then does the
//! node subscribe the bus to that topic or unsubscribe it. The hub change and the bus call of
//! one topic happen under that topic's lock, so a user's last socket leaving while a new one
//! arrives cannot end with the node unsubscribed (centrifuge's `node.addSubscription` does the
//! same). Subscribing happens before the socket is told it is connected or joined, so it misses
//! no event after that.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::attachments::UrlSigner;
use crate::audit::Audit;
use crate::auth::{Caller, Verifier};
use crate::chat::{ChatError, ChatResult};
use crate::chat::{ChatLimits, ChatService, Joined};
use crate::config::ServeConfig;
use crate::engine::memory::limiter::MemoryLimiter;
use crate::engine::{memory, redis, Bus, Engine, Notice, Presenter, RateLimiter, Timings, Topic};
use crate::hub::{Hub, SocketHandle};
use crate::store::embedded::EmbeddedStore;
use crate::store::mongo::MongoStore;
use crate::store::Store;
use crate::writer::{StoreHealth, Writer};

/// Locks that serialize the pairing of hub and bus, one per topic hash.
const TOPIC_LOCKS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Backend(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

pub struct Node {
    /// This node's name in logs, the audit log and `/readyz`.
    pub id: String,
    pub config: ServeConfig,
    /// The rules every socket event and REST call goes through.
    pub chat: ChatService,
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub verifier: Verifier,
    /// Checks attachment download urls (the chat rules sign them).
    pub signer: Arc<UrlSigner>,
    pub audit: Audit,
    pub metrics: Option<PrometheusHandle>,
    /// True once the node drains: readiness fails, sessions close, upgrades are refused.
    pub drain: watch::Sender<bool>,
    /// Told once when the drain starts: what open sessions wait on (smaller than a watch
    /// receiver in every socket's task; they check [`Node::is_draining`] too).
    pub draining: Notify,
    /// Whether the write-behind writer's last store write failed (`/readyz` `store:"degraded"`).
    pub store_health: Arc<StoreHealth>,
    /// Bounds open websocket sessions (`CHAT_MAX_CONNECTIONS`); a drain waits for all permits.
    pub sessions: Arc<Semaphore>,
    max_sessions: usize,
    /// Typing events per socket (`CHAT_TYPING_RATE`), keyed by socket id: the same limiter as
    /// the in-process message limit, kept on the node since a socket lives on one node.
    typing_limiter: MemoryLimiter,
    subscriptions: Subscriptions,
    /// The write-behind writer's stop flag and task, until the drain stops it.
    writer: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl Node {
    /// Builds the node from its configuration and starts its background tasks (engine timers,
    /// the write-behind writer, the announcer of engine notices). It serves once a listener
    /// hands it requests.
    pub async fn start(config: ServeConfig) -> Result<Arc<Node>, StartError> {
        if config.redis_url.is_some() && config.mongodb_url.is_none() {
            return Err(StartError::Config(
                "CHAT_REDIS_URL needs CHAT_MONGODB_URL: nodes of the Redis engine share one history, and with the \
                 embedded store each node would keep its own. Set CHAT_MONGODB_URL, or unset CHAT_REDIS_URL to run one \
                 node"
                    .into(),
            ));
        }
        let id = config.node_id.clone().unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        let demo_secret = crate::demo::shared_secret(&config).await.map_err(StartError::Backend)?;
        let verifier = Verifier::from_config(&config, demo_secret.as_deref()).map_err(StartError::Config)?;
        let signer = Arc::new(UrlSigner::from_config(&config, demo_secret.as_deref()));
        let metrics = crate::metrics::install();
        let audit = Audit::open(&id, config.audit_log.as_deref())
            .await
            .map_err(|e| StartError::Config(format!("CHAT_AUDIT_LOG: {e}")))?;

        let store: Arc<dyn Store> = match &config.mongodb_url {
            Some(url) => Arc::new(
                MongoStore::connect(url).await.map_err(|e| StartError::Backend(format!("CHAT_MONGODB_URL: {e}")))?,
            ),
            None => Arc::new(
                EmbeddedStore::open_with_cache(&config.data_dir, config.limits.store_cache_bytes())
                    .map_err(|e| StartError::Backend(e.to_string()))?,
            ),
        };
        if config.demo {
            crate::demo::seed(store.as_ref())
                .await
                .map_err(|e| StartError::Backend(format!("seeding demo data: {e}")))?;
        }
        let hub = Hub::new();
        let (engine, notices) = start_engine(&config, &id, hub.clone(), store.clone(), signer.clone())
            .await
            .map_err(|e| StartError::Backend(e.to_string()))?;
        let chat = ChatService::new(store.clone(), engine.clone(), ChatLimits::from(&config.limits), signer.clone());

        let limits = &config.limits;
        let store_health = Arc::new(StoreHealth::default());
        let (stop_writer, writer_stop) = watch::channel(false);
        let writer = Writer {
            log: engine.log.clone(),
            store: store.clone(),
            batch: limits.writer_batch,
            flush_interval: Duration::from_millis(limits.writer_flush_ms),
            health: store_health.clone(),
        };
        let writer_task = tokio::spawn(writer.run(writer_stop));
        let max_sessions = limits.max_connections.min(Semaphore::MAX_PERMITS);
        let typing_rate = limits.typing_rate;
        let node = Arc::new(Node {
            id,
            chat,
            subscriptions: Subscriptions::new(hub.clone(), engine.bus.clone()),
            engine,
            store,
            hub,
            verifier,
            signer,
            audit,
            metrics,
            drain: watch::channel(false).0,
            draining: Notify::new(),
            store_health,
            sessions: Arc::new(Semaphore::new(max_sessions)),
            max_sessions,
            typing_limiter: MemoryLimiter::new(typing_rate, typing_rate),
            writer: Mutex::new(Some((stop_writer, writer_task))),
            config,
        });
        tokio::spawn(announce(node.clone(), notices));
        tokio::spawn(prune_typing_limits(node.clone()));
        Ok(node)
    }

    /// A socket authenticated: the hub holds it, and the bus carries its user's events to this
    /// node. Call before the socket is told it is connected.
    pub async fn connect(&self, socket: &Arc<SocketHandle>) {
        self.subscriptions.connect(socket).await;
    }

    /// `join_chat`: the chat rules' checks and what the caller missed, then the socket is in the
    /// chat's room (typing indicators) and the bus carries the room's events to this node.
    pub async fn join(
        &self,
        socket: &Arc<SocketHandle>,
        caller: &Caller,
        chat_id: &str,
        last_seq: Option<u64>,
    ) -> ChatResult<Joined> {
        let joined = self.chat.join(caller, chat_id, last_seq).await?;
        self.subscriptions.join(socket, &joined.chat.id).await?;
        let seen = joined.missed.last().map_or(joined.chat.last_seq, |m| m.seq);
        self.engine.bus.track(&caller.user_id, &joined.chat.id, seen);
        Ok(joined)
    }

    /// `leave_chat`: the socket is out of the chat's room.
    pub async fn leave(&self, socket: &SocketHandle, chat_id: &str) {
        self.subscriptions.leave(socket, chat_id).await;
    }

    /// The socket closed: out of its rooms and the hub, and presence is told.
    pub async fn disconnect(&self, socket: &SocketHandle) {
        self.subscriptions.disconnect(socket).await;
        if let Err(e) = self.chat.socket_closed(&socket.user).await {
            tracing::warn!(error = %e, "presence update failed");
        }
    }

    /// Takes one of the socket's typing allowance, or says how long until one is available.
    pub async fn allow_typing(&self, socket: &SocketHandle) -> ChatResult<()> {
        match self.typing_limiter.check(&socket.id.to_string()).await? {
            Ok(()) => Ok(()),
            Err(retry) => Err(ChatError::RateLimited(retry)),
        }
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Starts the drain: readiness fails and new sockets are refused at once, open sockets close
    /// at the transport level (clients reconnect elsewhere). Waits until they are all gone, or
    /// `deadline`.
    pub async fn drain_sessions(&self, deadline: Instant) {
        // send_replace: `send` changes nothing when no socket is subscribed, and /readyz must see it.
        self.drain.send_replace(true);
        self.draining.notify_waiters();
        let all = self.max_sessions as u32;
        let _ = tokio::time::timeout_at(deadline.into(), self.sessions.acquire_many(all)).await;
    }

    /// Ends the drain: stops the writer and flushes the write-behind queue into the store as far
    /// as it allows, until shortly after `deadline` (the rest stays in the durable queue).
    pub async fn finish(&self, deadline: Instant) {
        let writer = self.writer.lock().take();
        if let Some((stop, task)) = writer {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let flusher = Writer {
            log: self.engine.log.clone(),
            store: self.store.clone(),
            batch: self.config.limits.writer_batch,
            flush_interval: Duration::ZERO,
            health: self.store_health.clone(),
        };
        let flushed = flusher.flush(Instant::now().max(deadline) + Duration::from_secs(2)).await;
        let left = self.engine.log.backlog().await.unwrap_or(0);
        tracing::info!(flushed, left_in_queue = left, "drained");
    }
}

/// The hub and the bus, paired: each change to the hub that makes a socket the first or the last
/// of its user or room on this node subscribes the bus to that topic or unsubscribes it, under
/// the topic's lock.
pub struct Subscriptions {
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    locks: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Subscriptions {
    pub fn new(hub: Arc<Hub>, bus: Arc<dyn Bus>) -> Self {
        let locks = (0..TOPIC_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        Subscriptions { hub, bus, locks, hasher: Default::default() }
    }

    /// The socket is in the hub; its user's topic is subscribed.
    pub async fn connect(&self, socket: &Arc<SocketHandle>) {
        let topic = Topic::User(socket.user.clone());
        let _paired = self.lock(&topic).await;
        if self.hub.register(socket.clone()) {
            if let Err(e) = self.bus.subscribe(&topic).await {
                tracing::warn!(error = %e, user = %socket.user, "subscribing to a user's events failed");
            }
        }
    }

    /// The socket is in the chat's room; the room's topic is subscribed.
    pub async fn join(&self, socket: &Arc<SocketHandle>, chat_id: &str) -> ChatResult<()> {
        let topic = Topic::Room(chat_id.to_owned());
        let _paired = self.lock(&topic).await;
        if self.hub.join(chat_id, socket).map_err(|e| ChatError::InvalidPayload(e.to_string()))? {
            self.bus.subscribe(&topic).await?;
        }
        Ok(())
    }

    /// The socket is out of the chat's room; the room's topic too when it was the last.
    pub async fn leave(&self, socket: &SocketHandle, chat_id: &str) {
        let topic = Topic::Room(chat_id.to_owned());
        let _paired = self.lock(&topic).await;
        if self.hub.leave(chat_id, socket) {
            self.bus.unsubscribe(&topic).await;
        }
    }

    /// The socket is out of its rooms and the hub; each topic it was the last of is unsubscribed.
    pub async fn disconnect(&self, socket: &SocketHandle) {
        for chat_id in socket.rooms() {
            self.leave(socket, &chat_id).await;
        }
        let topic = Topic::User(socket.user.clone());
        let _paired = self.lock(&topic).await;
        if self.hub.unregister(socket) {
            self.bus.unsubscribe(&topic).await;
        }
    }

    async fn lock(&self, topic: &Topic) -> tokio::sync::MutexGuard<'_, ()> {
        let shard = self.hasher.hash_one(topic) as usize % TOPIC_LOCKS;
        self.locks[shard].lock().await
    }
}

/// The engine the configuration names: Redis with `CHAT_REDIS_URL`, else in-process.
async fn start_engine(
    config: &ServeConfig,
    node_id: &str,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    signer: Arc<UrlSigner>,
) -> crate::engine::EngineResult<(Engine, mpsc::Receiver<Notice>)> {
    let limits = &config.limits;
    let timings = Timings {
        presence_grace: Duration::from_millis(limits.presence_grace_ms),
        typing_ttl: Duration::from_millis(limits.typing_ttl_ms),
    };
    let idempotency_window = Duration::from_secs(limits.idempotency_hours * 3600);
    // The engine signs the attachment urls of the copies it fans out, as the chat rules do.
    let presenter: Presenter = Arc::new(move |m| signer.present(m));
    let Some(url) = &config.redis_url else {
        let engine_limits = memory::MemoryLimits {
            messages_per_second: limits.message_rate,
            message_burst: limits.message_burst,
            idempotency_window,
            index_cache_bytes: limits.queue_cache_bytes(),
        };
        return memory::start(&config.data_dir, hub, store, timings, engine_limits, presenter);
    };
    let settings = &config.redis;
    let options = redis::RedisOptions {
        url: url.clone(),
        prefix: settings.redis_prefix.clone(),
        shards: settings.redis_shards,
        recent: settings.redis_recent,
        recent_ttl: Duration::from_secs(u64::from(settings.redis_recent_days) * 86_400),
        pool: settings.redis_pool,
        timeout: Duration::from_millis(settings.redis_timeout_ms),
        node_id: node_id.to_owned(),
        node_dead_after: Duration::from_secs(settings.node_dead_after),
        idempotency_window,
        messages_per_second: limits.message_rate,
        message_burst: limits.message_burst,
        wait_replicas: settings.redis_wait_replicas,
    };
    let (engine, notices, _tasks) = redis::start(options, hub, store, timings, presenter).await?;
    Ok((engine, notices))
}

/// Turns the engine's timer decisions (offline after the grace period, typing expired) into the
/// contract's events, for the life of the node.
async fn announce(node: Arc<Node>, mut notices: mpsc::Receiver<Notice>) {
    while let Some(notice) = notices.recv().await {
        if let Err(e) = node.chat.announce(notice).await {
            tracing::warn!(error = %e, "announcing a presence or typing change failed");
        }
    }
}

/// Forgets the typing allowances that are full again, so closed and idle sockets cost nothing.
async fn prune_typing_limits(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        node.typing_limiter.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::redis::testing;
    use crate::hub::{Delivery, Target};
    use crate::store::embedded::EmbeddedStore;

    async fn redis_engine(prefix: &str, name: &str, hub: Arc<Hub>) -> (Engine, redis::Tasks, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (engine, _notices, tasks) =
            redis::start(testing::options(prefix, name), hub, store, Timings::default(), Arc::new(|_| {}))
                .await
                .unwrap();
        (engine, tasks, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_leaving_and_coming_back_at_once_stays_subscribed() {
        let (prefix, _guard) = testing::isolated();
        let hub = Hub::new();
        let (engine, tasks, _dir) = redis_engine(&prefix, "a", hub.clone()).await;
        let (sender, sender_tasks, _sender_dir) = redis_engine(&prefix, "b", Hub::new()).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // subscribers connected
        let subscriptions = Arc::new(Subscriptions::new(hub, engine.bus.clone()));
        let mut current = Arc::new(SocketHandle::new(1, "u1".into(), 64));
        subscriptions.connect(&current).await;
        for id in 2..52 {
            // A page reload: the old socket's goodbye races the new socket's hello.
            let next = Arc::new(SocketHandle::new(id, "u1".into(), 64));
            let (gone, back) = (subscriptions.clone(), subscriptions.clone());
            let (old, new) = (current.clone(), next.clone());
            let gone = tokio::spawn(async move { gone.disconnect(&old).await });
            let back = tokio::spawn(async move { back.connect(&new).await });
            let _ = tokio::join!(gone, back);
            current = next;
        }
        let frame = bytes::Bytes::from_static(b"42[\"ping\"]");
        let delivery = Delivery { target: Target::Users(vec!["u1".into()]), except: None, frame: frame.clone() };
        sender.bus.publish(delivery).await.unwrap();
        let got = crate::hub::testing::Inbox::new(current).next(Duration::from_secs(2)).await;
        assert_eq!(got, Some(frame), "still subscribed");
        tasks.abort();
        sender_tasks.abort();
    }
}
