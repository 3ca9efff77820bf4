//! The in-process engine: one node, nothing to install. The durable queue is redb in the data
//! dir ([`log`]); presence, typing and rate limits are in memory ([`presence`], [`typing`],
//! [`limiter`]), the directory is the shared cache over the store ([`directory`]) and the
//! fan-out bus is a direct call into the local hub ([`bus`]).

pub mod bus;
pub mod dedupe;
pub mod directory;
pub mod limiter;
pub mod log;
pub mod presence;
pub mod segments;
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
    /// Page cache of `queue.redb` (the dedupe index and seqs of released messages).
    pub index_cache_bytes: usize,
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
    let log = Arc::new(log::MemoryLog::open(
        data_dir,
        store.clone(),
        hub.clone(),
        limits.idempotency_window,
        presenter,
        limits.index_cache_bytes,
    )?);
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
        message_limiter: Some(limiter),
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
        MemoryLimits {
            messages_per_second: 10,
            message_burst: 20,
            idempotency_window: Duration::from_secs(3600),
            index_cache_bytes: 1 << 20,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_log_passes_the_message_log_contract() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store")).unwrap());
        let log = log::MemoryLog::open(
            dir.path(),
            store.clone(),
            hub.clone(),
            Duration::from_secs(3600),
            Arc::new(|_| {}),
            1 << 20,
        )
        .unwrap();
        contract_tests::message_log_suite(&log, store.as_ref(), &hub, &|_| async {}).await;
    }

    #[tokio::test]
    async fn memory_presence_and_typing_pass_their_contracts() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (engine, mut notices) = start(dir.path(), Hub::new(), store, fast(), limits(), Arc::new(|_| {})).unwrap();
        contract_tests::presence_suite(engine.presence.as_ref(), &mut notices, fast().presence_grace).await;
        contract_tests::typing_suite(engine.typing.as_ref(), &mut notices, fast().typing_ttl).await;
        contract_tests::rate_limiter_suite(engine.message_limiter.as_deref().unwrap(), 20).await;
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

    /// The store a test log reads released messages back from (as the node's writer fills it).
    fn test_store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(&dir.join("store")).unwrap())
    }

    fn open_log(dir: &std::path::Path, store: &Arc<dyn Store>) -> log::MemoryLog {
        log::MemoryLog::open(dir, store.clone(), Hub::new(), Duration::from_secs(3600), Arc::new(|_| {}), 1 << 20)
            .unwrap()
    }

    /// Opens the log again once the previous one's threads let go of the files.
    async fn reopen_log(dir: &std::path::Path, store: &Arc<dyn Store>) -> log::MemoryLog {
        loop {
            let opened = log::MemoryLog::open(
                dir,
                store.clone(),
                Hub::new(),
                Duration::from_secs(3600),
                Arc::new(|_| {}),
                1 << 20,
            );
            match opened {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn send(chat: &str, cmid: &str) -> crate::engine::AppendRequest {
        crate::engine::AppendRequest {
            chat_id: chat.to_owned(),
            sender_id: "s".into(),
            sender_type: crate::model::SenderType::User,
            kind: Default::default(),
            content: "x".into(),
            attachment: None,
            client_msg_id: cmid.into(),
            recipients: vec![],
            origin: None,
        }
    }

    #[tokio::test]
    async fn queued_messages_survive_a_restart() {
        use crate::engine::MessageLog;
        let dir = tempfile::tempdir().unwrap();
        let chat = crate::model::ids::new_object_id();
        let store = test_store(dir.path());
        {
            let log = open_log(dir.path(), &store);
            for cmid in ["a", "b"] {
                log.append(send(&chat, cmid)).await.unwrap();
            }
        }
        let log = reopen_log(dir.path(), &store).await;
        assert_eq!(log.backlog().await.unwrap(), 2);
        assert_eq!(log.pending(&chat).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn released_messages_stay_released_and_seqs_and_dedupe_survive_a_restart() {
        use crate::engine::MessageLog;
        let dir = tempfile::tempdir().unwrap();
        let chat = crate::model::ids::new_object_id();
        let store = test_store(dir.path());
        let first = {
            let log = open_log(dir.path(), &store);
            let first = log.append(send(&chat, "a")).await.unwrap().message;
            log.append(send(&chat, "b")).await.unwrap();
            let batch = log.next_batch(1, Duration::ZERO).await.unwrap();
            assert_eq!(batch.len(), 1);
            // As the writer does: stored, then released.
            store.persist_messages(&[batch[0].message.clone()]).await.unwrap();
            log.release(&[batch[0].token.clone()]).await.unwrap();
            first
        };
        let log = reopen_log(dir.path(), &store).await;
        assert_eq!(log.pending(&chat).await.unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2]);
        let again = log.append(send(&chat, "a")).await.unwrap();
        assert!(again.duplicate, "a released message still dedupes after a restart");
        assert_eq!(again.message, first);
        assert_eq!(log.append(send(&chat, "c")).await.unwrap().message.seq, 3, "seqs go on");
    }

    #[tokio::test]
    async fn a_queue_left_by_an_earlier_version_is_moved_into_the_log() {
        use crate::engine::MessageLog;
        let dir = tempfile::tempdir().unwrap();
        let chat = crate::model::ids::new_object_id();
        {
            let db = redb::Database::create(dir.path().join("queue.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut queue = txn.open_table(redb::TableDefinition::<u64, &[u8]>::new("queue")).unwrap();
                for seq in 1..=3u64 {
                    let message = crate::model::Message {
                        id: crate::model::ids::new_object_id(),
                        chat_id: chat.clone(),
                        seq,
                        sender_id: "s".into(),
                        sender_type: crate::model::SenderType::User,
                        kind: Default::default(),
                        content: "old".into(),
                        attachment: None,
                        client_msg_id: format!("m{seq}"),
                        created_at: crate::model::Timestamp::now(),
                    };
                    queue.insert(seq, serde_json::to_vec(&message).unwrap().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = test_store(dir.path());
        // And a message its dedupe index held, released (stored) long ago.
        let other_chat = crate::model::ids::new_object_id();
        let released = crate::model::Message {
            id: crate::model::ids::new_object_id(),
            chat_id: other_chat.clone(),
            seq: 1,
            sender_id: "s".into(),
            sender_type: crate::model::SenderType::User,
            kind: Default::default(),
            content: "long ago".into(),
            attachment: None,
            client_msg_id: "old".into(),
            created_at: crate::model::Timestamp::now(),
        };
        store.persist_messages(std::slice::from_ref(&released)).await.unwrap();
        {
            let db = redb::Database::open(dir.path().join("queue.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let def = redb::TableDefinition::<(&str, &str, &str), &[u8]>::new("idempotency");
                let mut index = txn.open_table(def).unwrap();
                let json = serde_json::to_vec(&released).unwrap();
                index.insert((other_chat.as_str(), "s", "old"), json.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let log = open_log(dir.path(), &store);
        let again = log.append(send(&other_chat, "old")).await.unwrap();
        assert!(again.duplicate, "the earlier version's dedupe index was moved");
        assert_eq!(again.message, released);
        assert_eq!(log.backlog().await.unwrap(), 3);
        assert!(log.append(send(&chat, "m2")).await.unwrap().duplicate);
        assert_eq!(log.append(send(&chat, "new")).await.unwrap().message.seq, 4);
        drop(log);
        let log = reopen_log(dir.path(), &store).await;
        assert_eq!(log.backlog().await.unwrap(), 4, "moved once, not twice");
    }
}
