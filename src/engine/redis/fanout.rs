//! Fan-out across nodes over Redis pub/sub.
//!
//! Channels: one per user (`<prefix>u:<user>`: message_received, message_read, user_online and
//! user_offline reach every socket of the user) and one per chat room (`<prefix>c:<chat>`:
//! typing_indicator), plus one invalidation channel every node hears. A node subscribes to the
//! channel of each user and room it holds a socket for, on one dedicated connection, so it
//! decodes only events its sockets want; a publish is one encoded frame whichever number of
//! sockets and nodes receive it.
//!
//! Payloads: `M|<except>|<chat>|<seq>|<frame>` for message_received (the append script writes
//! it), `E|<except>|<frame>` for every other event; `except` is the socket that must not get the
//! event (0: none).
//!
//! Pub/sub is at most once. The node remembers, per (user, chat), the last seq its sockets got;
//! when the next one jumps, the missing messages are read from the recent window (or the store)
//! and delivered first. After the subscriber connection comes back, every remembered (user,
//! chat) is caught up the same way, the directory cache is dropped (invalidations may have been
//! missed) and the node rewrites its share of presence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::PubSubSink;

use super::directory::decode_invalidation;
use super::keys::Channel;
use super::log::RedisLog;
use super::presence::RedisPresence;
use super::{unavailable, Redis};
use crate::engine::memory::directory::CachedDirectory;
use crate::engine::{messages_after, Bus, EngineError, EngineResult, Presenter, Topic};
use crate::events::message_received_frame;
use crate::hub::{Delivery, Hub, SocketId, Target};
use crate::model::Message;
use crate::store::Store;

/// How often the subscriber connection is pinged; no answer within the Redis timeout means it
/// is dead and is replaced.
const PING_EVERY: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE when resubscribing.
const SUBSCRIBE_CHUNK: usize = 1000;
/// Most messages one catch-up delivers to a (user, chat); a client that missed more recovers
/// through `join_chat {lastSeq}` (its `hasMore`).
const CATCH_UP_LIMIT: usize = 500;
/// Most missed messages delivered live to a (user, chat); beyond, the sockets resync.
const CATCH_UP_DELIVER: usize = 64;

pub struct Fanout {
    redis: Redis,
    client: redis::Client,
    hub: Arc<Hub>,
    log: Arc<RedisLog>,
    store: Arc<dyn Store>,
    cache: Arc<CachedDirectory>,
    presence: Arc<RedisPresence>,
    presenter: Presenter,
    /// Channel → sockets of this node listening to it. Held across the SUBSCRIBE or UNSUBSCRIBE
    /// a change needs, so that a user leaving and coming back at once cannot end unsubscribed.
    interest: tokio::sync::Mutex<HashMap<String, usize>>,
    /// The subscriber connection's command side, while connected.
    sink: Mutex<Option<PubSubSink>>,
    /// (user, chat) → what this node's sockets of the user got.
    seen: Mutex<HashMap<(String, String), Seen>>,
}

/// What a user's sockets on this node got of one chat.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The highest seq delivered (or known to the sockets from `join_chat`): a later seq that is
    /// not the next one is a gap.
    last: u64,
    /// The highest seq a catch-up delivered: pub/sub copies up to it arriving late are dropped.
    filled: u64,
}

/// One pub/sub payload, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Payload<'a> {
    Message { except: SocketId, chat_id: &'a str, seq: u64, frame: &'a [u8] },
    Event { except: SocketId, frame: &'a [u8] },
}

fn parse(payload: &[u8]) -> Option<Payload<'_>> {
    fn text_field(b: &[u8]) -> Option<&str> {
        std::str::from_utf8(b).ok()
    }
    let number = |b: &[u8]| text_field(b).and_then(|t| t.parse::<u64>().ok());
    match payload.first()? {
        b'M' => {
            let mut parts = payload.splitn(5, |b| *b == b'|').skip(1);
            let except = number(parts.next()?)?;
            let chat_id = text_field(parts.next()?)?;
            let seq = number(parts.next()?)?;
            Some(Payload::Message { except, chat_id, seq, frame: parts.next()? })
        }
        b'E' => {
            let mut parts = payload.splitn(3, |b| *b == b'|').skip(1);
            let except = number(parts.next()?)?;
            Some(Payload::Event { except, frame: parts.next()? })
        }
        _ => None,
    }
}

fn event_payload(except: Option<SocketId>, frame: &[u8]) -> Vec<u8> {
    let mut out = format!("E|{}|", except.unwrap_or(0)).into_bytes();
    out.extend_from_slice(frame);
    out
}

impl Fanout {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        redis: Redis,
        url: &str,
        hub: Arc<Hub>,
        log: Arc<RedisLog>,
        store: Arc<dyn Store>,
        cache: Arc<CachedDirectory>,
        presence: Arc<RedisPresence>,
        presenter: Presenter,
    ) -> EngineResult<Arc<Self>> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        Ok(Arc::new(Fanout {
            redis,
            client,
            hub,
            log,
            store,
            cache,
            presence,
            presenter,
            interest: tokio::sync::Mutex::new(HashMap::new()),
            sink: Mutex::new(None),
            seen: Mutex::new(HashMap::new()),
        }))
    }

    /// Waits until the subscriber connection is up, at most `within`; false when it is not.
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.sink.lock().is_none() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::User(user) => self.redis.keys.user_channel(user),
            Topic::Room(chat) => self.redis.keys.room_channel(chat),
        }
    }

    /// The subscriber: connects, subscribes to everything this node listens to, delivers, and
    /// starts over whenever the connection is lost. Runs for the life of the node.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = RECONNECT_MIN;
        let mut first = true;
        loop {
            match self.clone().subscribe_and_serve(first).await {
                Ok(()) => backoff = RECONNECT_MIN,
                Err(e) => tracing::warn!(error = %e, "redis subscriber connection lost"),
            }
            *self.sink.lock() = None;
            metrics::gauge!("coursechat_redis_subscriber_connected").set(0.0);
            first = false;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    }

    async fn subscribe_and_serve(self: Arc<Self>, first: bool) -> EngineResult<()> {
        let timeout = self.redis.timeout();
        let pubsub = tokio::time::timeout(timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("connecting the subscriber timed out"))?
            .map_err(unavailable)?;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(self.redis.keys.invalidation_channel()).await.map_err(unavailable)?;
        let channels: Vec<String> = {
            let interest = self.interest.lock().await;
            *self.sink.lock() = Some(sink.clone());
            let channels: Vec<String> = interest.keys().cloned().collect();
            for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                tokio::time::timeout(timeout * 5, sink.subscribe(chunk))
                    .await
                    .map_err(unavailable)?
                    .map_err(unavailable)?;
            }
            channels
        };
        metrics::gauge!("coursechat_redis_subscriber_connected").set(1.0);
        if !first {
            metrics::counter!("coursechat_redis_resubscribes_total").increment(1);
            tracing::info!(channels = channels.len(), "redis subscriber back: catching up");
            self.recover().await;
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut handled: u32 = 0;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        self.handle(message.get_channel_name(), message.get_payload_bytes()).await;
                        // A burst from Redis is handed out without awaiting anything: let the
                        // sockets' writers run now and then, so their queues drain meanwhile.
                        handled = handled.wrapping_add(1);
                        if handled % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    None => return Err(unavailable("the subscriber connection closed")),
                },
                _ = ping.tick() => {
                    let mut pinger = sink.clone();
                    // In subscribed mode PING answers ["pong", ""].
                    match tokio::time::timeout(timeout, pinger.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(unavailable(e)),
                        Err(_) => return Err(unavailable("the subscriber connection stopped answering")),
                    }
                }
            }
        }
    }

    /// After the subscriber was away: what may have been missed.
    async fn recover(&self) {
        self.cache.forget_all();
        if let Err(e) = self.presence.reassert().await {
            tracing::warn!(error = %e, "rewriting this node's presence failed");
        }
        let tracked: Vec<((String, String), u64)> = self.seen.lock().iter().map(|(k, v)| (k.clone(), v.last)).collect();
        for ((user, chat_id), last) in tracked {
            self.catch_up(&user, &chat_id, last, None).await;
        }
    }

    async fn handle(&self, channel: &str, payload: &[u8]) {
        match self.redis.keys.parse_channel(channel) {
            Some(Channel::Invalidation) => {
                if let Some(change) = std::str::from_utf8(payload).ok().and_then(decode_invalidation) {
                    self.cache.forget(&change);
                }
            }
            Some(Channel::User(user)) => match parse(payload) {
                Some(Payload::Message { except, chat_id, seq, frame }) => {
                    let seen = self.seen.lock().get(&(user.to_owned(), chat_id.to_owned())).copied();
                    if seen.is_some_and(|s| seq <= s.filled) {
                        return; // a catch-up delivered it already
                    }
                    if let Some(seen) = seen.filter(|s| seq > s.last + 1) {
                        self.catch_up(user, chat_id, seen.last, Some(seq)).await;
                    }
                    self.deliver(Target::Users(vec![user.to_owned()]), except, frame);
                    self.note_seen(user, chat_id, seq, false);
                }
                Some(Payload::Event { except, frame }) => {
                    self.deliver(Target::Users(vec![user.to_owned()]), except, frame)
                }
                None => tracing::warn!(channel, "unreadable pub/sub payload"),
            },
            Some(Channel::Room(chat)) => match parse(payload) {
                Some(Payload::Event { except, frame }) => self.deliver(Target::Room(chat.to_owned()), except, frame),
                _ => tracing::warn!(channel, "unreadable pub/sub payload"),
            },
            None => {}
        }
    }

    fn deliver(&self, target: Target, except: SocketId, frame: &[u8]) {
        let except = (except != 0).then_some(except);
        self.hub.deliver(&Delivery { target, except, frame: Bytes::copy_from_slice(frame) });
    }

    fn note_seen(&self, user: &str, chat_id: &str, seq: u64, filled: bool) {
        let mut seen = self.seen.lock();
        let entry = seen.entry((user.to_owned(), chat_id.to_owned())).or_default();
        entry.last = entry.last.max(seq);
        if filled {
            entry.filled = entry.filled.max(seq);
        }
    }

    /// Delivers to `user`'s sockets the messages of `chat_id` after `last` (and before `until`),
    /// which pub/sub lost.
    async fn catch_up(&self, user: &str, chat_id: &str, last: u64, until: Option<u64>) {
        let read = messages_after::<EngineError>(self.log.as_ref(), self.store.as_ref(), chat_id, last, CATCH_UP_LIMIT);
        let missed = match read.await {
            Ok(missed) => missed,
            Err(e) => {
                tracing::warn!(error = %e, chat_id, "could not fill a gap in the fan-out");
                return;
            }
        };
        let missed: Vec<Message> = missed.into_iter().filter(|m| until.is_none_or(|u| m.seq < u)).collect();
        if missed.is_empty() {
            return;
        }
        metrics::counter!("coursechat_fanout_gap_messages_total").increment(missed.len() as u64);
        if missed.len() > CATCH_UP_DELIVER {
            // More than a socket's queue should take at once: the user's sockets reconnect and
            // recover through `join_chat {lastSeq}`, which pages.
            tracing::info!(user, chat_id, missed = missed.len(), "gap too large to fill live: sockets resync");
            self.hub.resync_user(user);
            self.seen.lock().retain(|(u, _), _| u != user);
            return;
        }
        for mut message in missed {
            let seq = message.seq;
            (self.presenter)(&mut message);
            let Ok(json) = serde_json::to_vec(&message) else { continue };
            let frame = message_received_frame(&json);
            self.hub.deliver(&Delivery { target: Target::Users(vec![user.to_owned()]), except: None, frame });
            self.note_seen(user, chat_id, seq, true);
        }
    }
}

#[async_trait]
impl Bus for Fanout {
    async fn publish(&self, delivery: Delivery) -> EngineResult<()> {
        let payload = event_payload(delivery.except, &delivery.frame);
        let mut pipe = redis::pipe();
        match &delivery.target {
            Target::Users(users) => {
                for user in users {
                    pipe.cmd("PUBLISH").arg(self.redis.keys.user_channel(user)).arg(&payload).ignore();
                }
            }
            Target::Room(chat) => {
                pipe.cmd("PUBLISH").arg(self.redis.keys.room_channel(chat)).arg(&payload).ignore();
            }
        }
        self.redis.pipeline::<()>(pipe).await
    }

    async fn watch(&self, topic: Topic) -> EngineResult<()> {
        let channel = self.channel(&topic);
        let mut interest = self.interest.lock().await;
        let count = interest.entry(channel.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            // Not connected: the subscriber subscribes to every interest when it is back.
            let sink = self.sink.lock().clone();
            if let Some(mut sink) = sink {
                match tokio::time::timeout(self.redis.timeout(), sink.subscribe(&channel)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, channel, "subscribe failed"),
                    Err(_) => tracing::warn!(channel, "subscribe timed out"),
                }
            }
        }
        Ok(())
    }

    async fn unwatch(&self, topic: Topic) {
        let channel = self.channel(&topic);
        let mut interest = self.interest.lock().await;
        let last = match interest.get_mut(&channel) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                interest.remove(&channel);
                true
            }
            None => false,
        };
        if !last {
            return;
        }
        if let Topic::User(user) = &topic {
            self.seen.lock().retain(|(u, _), _| u != user);
        }
        let sink = self.sink.lock().clone();
        if let Some(mut sink) = sink {
            let _ = tokio::time::timeout(self.redis.timeout(), sink.unsubscribe(&channel)).await;
        }
    }

    /// Called for sockets of this node only, so `user` is watched here (and forgotten with its
    /// last socket).
    fn track(&self, user: &str, chat_id: &str, seq: u64) {
        self.note_seen(user, chat_id, seq, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        assert_eq!(
            parse(br#"M|7|abc|12|42["x",{"a":"b|c"}]"#),
            Some(Payload::Message { except: 7, chat_id: "abc", seq: 12, frame: br#"42["x",{"a":"b|c"}]"# })
        );
        assert_eq!(parse(&event_payload(None, b"42[1|2]")), Some(Payload::Event { except: 0, frame: b"42[1|2]" }));
        assert_eq!(parse(b"M|x|abc|1|f"), None);
        assert_eq!(parse(b"Q|1|f"), None);
        assert_eq!(parse(b""), None);
    }
}
