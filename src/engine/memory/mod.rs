//! The in-process engine: one node, nothing to install. The durable queue is redb in the data
//! dir ([`log`]); presence, typing and rate limits are in memory ([`presence`], [`typing`],
//! [`limiter`]), the directory is the shared cache over the store ([`directory`]) and the
//! fan-out bus is a direct call into the local hub ([`bus`]).

pub mod bus;
pub mod directory;
pub mod limiter;
pub mod log;
pub mod presence;
pub mod typing;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Engine, EngineResult, Notice, Presenter, Timings};
use crate::hub::Hub;
use crate::store::Store;

/// Limits of the in-process engine.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    pub messages_per_second: u32,
    pub message_burst: u32,
    pub idempotency_window: Duration,
}

/// Builds the in-process engine and starts its timer task. Notices come out of the receiver.
pub fn start(
    data_dir: &Path,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    timings: Timings,
    limits: MemoryLimits,
    presenter: Presenter,
) -> EngineResult<(Engine, mpsc::Receiver<Notice>)> {
    let (notices_tx, notices) = mpsc::channel(4096);
    let log = Arc::new(log::MemoryLog::open(data_dir, hub.clone(), limits.idempotency_window, presenter)?);
    let presence = Arc::new(presence::MemoryPresence::new(timings.presence_grace));
    let typing = Arc::new(typing::MemoryTyping::new(timings.typing_ttl));
    let limiter = Arc::new(limiter::MemoryLimiter::new(limits.messages_per_second, limits.message_burst));
    tokio::spawn(run_timers(presence.clone(), typing.clone(), limiter.clone(), log.clone(), notices_tx));
    let engine = Engine {
        kind: "memory",
        log,
        bus: Arc::new(bus::LocalBus::new(hub)),
        presence,
        typing,
        message_limiter: limiter,
        directory: Arc::new(directory::directory(store)),
    };
    Ok((engine, notices))
}

/// The one timer task of the in-process engine: ends grace periods and typing states, and
/// prunes what would otherwise accumulate (rate-limit keys, old idempotency entries).
async fn run_timers(
    presence: Arc<presence::MemoryPresence>,
    typing: Arc<typing::MemoryTyping>,
    limiter: Arc<limiter::MemoryLimiter>,
    log: Arc<log::MemoryLog>,
    notices: mpsc::Sender<Notice>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let now = tokio::time::Instant::now();
        let due: Vec<Notice> = presence.sweep(now).into_iter().chain(typing.sweep(now)).collect();
        for notice in due {
            if notices.send(notice).await.is_err() {
                return; // the node is shutting down
            }
        }
        if ticks % 600 == 0 {
            limiter.prune();
            if let Err(e) = log.prune_idempotency().await {
                tracing::warn!(error = %e, "pruning the idempotency window failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::contract_tests;
    use crate::store::embedded::EmbeddedStore;

    fn fast() -> Timings {
        Timings { presence_grace: Duration::from_millis(300), typing_ttl: Duration::from_millis(300) }
    }

    fn limits() -> MemoryLimits {
        MemoryLimits { messages_per_second: 10, message_burst: 20, idempotency_window: Duration::from_secs(3600) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_log_passes_the_message_log_contract() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new();
        let log = log::MemoryLog::open(dir.path(), hub.clone(), Duration::from_secs(3600), Arc::new(|_| {})).unwrap();
        contract_tests::message_log_suite(&log, &hub, &|_| async {}).await;
    }

    #[tokio::test]
    async fn memory_presence_and_typing_pass_their_contracts() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (engine, mut notices) = start(dir.path(), Hub::new(), store, fast(), limits(), Arc::new(|_| {})).unwrap();
        contract_tests::presence_suite(engine.presence.as_ref(), &mut notices, fast().presence_grace).await;
        contract_tests::typing_suite(engine.typing.as_ref(), &mut notices, fast().typing_ttl).await;
        contract_tests::rate_limiter_suite(engine.message_limiter.as_ref(), 20).await;
    }

    #[tokio::test]
    async fn local_bus_passes_the_bus_contract() {
        let hub = Hub::new();
        let bus = bus::LocalBus::new(hub.clone());
        contract_tests::bus_suite(&bus, &bus, &hub).await;
    }

    #[tokio::test]
    async fn memory_directory_passes_the_directory_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        contract_tests::directory_suite(&directory::directory(store.clone()), store.as_ref()).await;
    }

    #[tokio::test]
    async fn queued_messages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let chat = crate::model::ids::new_object_id();
        {
            let log =
                log::MemoryLog::open(dir.path(), Hub::new(), Duration::from_secs(3600), Arc::new(|_| {})).unwrap();
            for cmid in ["a", "b"] {
                let req = crate::engine::AppendRequest {
                    chat_id: chat.clone(),
                    sender_id: "s".into(),
                    sender_type: crate::model::SenderType::User,
                    kind: Default::default(),
                    content: "x".into(),
                    attachment: None,
                    client_msg_id: cmid.into(),
                    recipients: vec![],
                    origin: None,
                };
                crate::engine::MessageLog::append(&log, req).await.unwrap();
            }
        }
        let log = loop {
            match log::MemoryLog::open(dir.path(), Hub::new(), Duration::from_secs(3600), Arc::new(|_| {})) {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        use crate::engine::MessageLog;
        assert_eq!(log.backlog().await.unwrap(), 2);
        assert_eq!(log.pending(&chat).await.unwrap().len(), 2);
    }
}
