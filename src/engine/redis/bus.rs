//! The bus across nodes: Redis pub/sub.
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
//! Pub/sub is at most once; [`gaps`](super::gaps) fills what a lost connection dropped. After the
//! subscriber connection comes back, the directory cache is dropped (invalidations may have been
//! missed), every tracked (user, chat) is caught up and presence is told to rewrite this node's
//! share.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::PubSubSink;
use tokio::sync::Notify;

use super::directory::decode_invalidation;
use super::gaps::Gaps;
use super::keys::Channel;
use super::{unavailable, Redis};
use crate::engine::directory::CachedDirectory;
use crate::engine::{Bus, EngineResult, Topic};
use crate::hub::{Delivery, Hub, SocketId, Target};

/// How often the subscriber connection is pinged; no answer within the Redis timeout means it
/// is dead and is replaced.
const PING_EVERY: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE when resubscribing.
const SUBSCRIBE_CHUNK: usize = 1000;

pub struct RedisBus {
    redis: Redis,
    client: redis::Client,
    hub: Arc<Hub>,
    /// Forgets what the invalidation channel announces.
    cache: Arc<CachedDirectory>,
    gaps: Gaps,
    /// The channels this node is subscribed to (one per topic it holds a socket of), which the
    /// subscriber subscribes to again when it reconnects. Held across a SUBSCRIBE or UNSUBSCRIBE,
    /// so a change and a reconnect's resubscribe do not interleave.
    channels: tokio::sync::Mutex<HashSet<String>>,
    /// The subscriber connection's command side, while connected.
    sink: Mutex<Option<PubSubSink>>,
    /// Told each time the subscriber is back after losing its connection.
    reconnected: Arc<Notify>,
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

impl RedisBus {
    pub fn new(
        redis: Redis,
        url: &str,
        hub: Arc<Hub>,
        cache: Arc<CachedDirectory>,
        gaps: Gaps,
    ) -> EngineResult<Arc<Self>> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        Ok(Arc::new(RedisBus {
            redis,
            client,
            hub,
            cache,
            gaps,
            channels: tokio::sync::Mutex::new(HashSet::new()),
            sink: Mutex::new(None),
            reconnected: Arc::new(Notify::new()),
        }))
    }

    /// Notified each time the subscriber is back after losing its connection (whatever this node
    /// wrote to Redis while it was away may be gone).
    pub fn reconnected(&self) -> Arc<Notify> {
        self.reconnected.clone()
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
            let subscribed = self.channels.lock().await;
            *self.sink.lock() = Some(sink.clone());
            let channels: Vec<String> = subscribed.iter().cloned().collect();
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
        self.reconnected.notify_one();
        self.gaps.recover().await;
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
                    self.gaps.deliver(user, chat_id, seq, (except != 0).then_some(except), frame).await
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
}

#[async_trait]
impl Bus for RedisBus {
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

    async fn subscribe(&self, topic: &Topic) -> EngineResult<()> {
        let channel = self.channel(topic);
        let mut channels = self.channels.lock().await;
        if !channels.insert(channel.clone()) {
            return Ok(());
        }
        // Not connected: the subscriber subscribes to every channel when it is back.
        let sink = self.sink.lock().clone();
        if let Some(mut sink) = sink {
            match tokio::time::timeout(self.redis.timeout(), sink.subscribe(&channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, channel, "subscribe failed"),
                Err(_) => tracing::warn!(channel, "subscribe timed out"),
            }
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) {
        let channel = self.channel(topic);
        let mut channels = self.channels.lock().await;
        if !channels.remove(&channel) {
            return;
        }
        if let Topic::User(user) = topic {
            self.gaps.forget(user);
        }
        let sink = self.sink.lock().clone();
        if let Some(mut sink) = sink {
            let _ = tokio::time::timeout(self.redis.timeout(), sink.unsubscribe(&channel)).await;
        }
    }

    /// Called for sockets of this node only, so `user` is subscribed here (and forgotten with
    /// its last socket).
    fn track(&self, user: &str, chat_id: &str, seq: u64) {
        self.gaps.track(user, chat_id, seq);
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
