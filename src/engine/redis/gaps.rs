//! Gap filling for the Redis fan-out. Pub/sub is at most once: a subscriber connection that
//! drops, or a slow one that Redis disconnects, loses what was published meanwhile.
//!
//! The node remembers, per (user, chat), the last seq its sockets of the user got; when the next
//! one jumps, the missing messages are read ([`history::read`]) and delivered first, and
//! late pub/sub copies of them are dropped. After the subscriber connection comes back, every
//! remembered (user, chat) is caught up the same way. A gap too large to deliver live makes the
//! user's sockets resync through `join_chat {lastSeq}`. Entries live while the user has a socket
//! on this node.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::engine::{history, EngineError, MessageLog, Presenter, Window};
use crate::events::message_received_frame;
use crate::hub::{Delivery, Hub, SocketId, Target};
use crate::model::Message;
use crate::store::Store;

/// Most messages one catch-up delivers to a (user, chat); a client that missed more recovers
/// through `join_chat {lastSeq}` (its `hasMore`).
const CATCH_UP_LIMIT: usize = 500;
/// Most missed messages delivered live to a (user, chat); beyond, the sockets resync.
const CATCH_UP_DELIVER: usize = 64;

/// What a user's sockets on this node got of one chat.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The highest seq delivered (or known to the sockets from `join_chat`): a later seq that is
    /// not the next one is a gap.
    last: u64,
    /// The highest seq a catch-up delivered: pub/sub copies up to it arriving late are dropped.
    filled: u64,
}

pub struct Gaps {
    hub: Arc<Hub>,
    log: Arc<dyn MessageLog>,
    store: Arc<dyn Store>,
    /// Signs attachment urls of the messages a catch-up delivers.
    presenter: Presenter,
    /// (user, chat) → what this node's sockets of the user got.
    seen: Mutex<HashMap<(String, String), Seen>>,
}

impl Gaps {
    pub fn new(hub: Arc<Hub>, log: Arc<dyn MessageLog>, store: Arc<dyn Store>, presenter: Presenter) -> Self {
        Gaps { hub, log, store, presenter, seen: Mutex::new(HashMap::new()) }
    }

    /// A `message_received` for `user` from pub/sub: fills the gap before it, if any, then
    /// delivers it, unless a catch-up already did.
    pub async fn deliver(&self, user: &str, chat_id: &str, seq: u64, except: Option<SocketId>, frame: &[u8]) {
        let seen = self.seen.lock().get(&(user.to_owned(), chat_id.to_owned())).copied();
        if seen.is_some_and(|s| seq <= s.filled) {
            return; // a catch-up delivered it already
        }
        if let Some(seen) = seen.filter(|s| seq > s.last + 1) {
            self.catch_up(user, chat_id, seen.last, Some(seq)).await;
        }
        let frame = bytes::Bytes::copy_from_slice(frame);
        self.hub.deliver(&Delivery { target: Target::Users(vec![user.to_owned()]), except, frame });
        self.note_seen(user, chat_id, seq, false);
    }

    /// The sockets of `user` have `chat_id` up to `seq` (from `join_chat`).
    pub fn track(&self, user: &str, chat_id: &str, seq: u64) {
        self.note_seen(user, chat_id, seq, false);
    }

    /// The user's last socket on this node is gone.
    pub fn forget(&self, user: &str) {
        self.seen.lock().retain(|(u, _), _| u != user);
    }

    /// After the subscriber was away: catches every remembered (user, chat) up.
    pub async fn recover(&self) {
        let tracked: Vec<((String, String), u64)> = self.seen.lock().iter().map(|(k, v)| (k.clone(), v.last)).collect();
        for ((user, chat_id), last) in tracked {
            self.catch_up(&user, &chat_id, last, None).await;
        }
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
        let window = Window::After { after: last, limit: CATCH_UP_LIMIT };
        let read = history::read::<EngineError>(self.log.as_ref(), self.store.as_ref(), chat_id, window);
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
            self.forget(user);
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
