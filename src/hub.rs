//! This node's sockets: by user (for `message_received`, `message_read`, presence) and by chat
//! room (for typing indicators). The fan-out bus hands every event here; the hub puts the one
//! encoded frame into each recipient's bounded write queue.
//!
//! The hub is the one record of which socket listens to what: each change says whether it was
//! the first or the last socket of its user or room on this node, which is when the node
//! subscribes the bus to that topic or unsubscribes it ([`crate::node`]).
//!
//! Queue policy: a socket whose write queue is full is a slow consumer. It is told to close
//! (transport close, so its client reconnects and recovers through `join_chat {lastSeq}`), never
//! buffered without bound and never allowed to stall delivery to the others. The queue is a
//! deque the session swaps with its own when it writes, so an idle socket's queue holds no
//! allocation beyond a few slots, and a busy one allocates nothing per frame.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// Unique per socket across all nodes (64 random bits), so an event can name the socket it came
/// from and every node can skip it.
pub type SocketId = u64;

/// Who receives an event.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every socket of each of these users.
    Users(Vec<String>),
    /// Every socket that joined this chat.
    Room(String),
}

/// One encoded event on its way to sockets.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub target: Target,
    /// The socket that caused the event and must not receive it (it has the ack).
    pub except: Option<SocketId>,
    /// The Engine.IO frame, encoded once and shared by every recipient.
    pub frame: Bytes,
}

/// Most chats one socket may have joined at once (bounds its room list).
pub const MAX_JOINED_CHATS: usize = 1024;

/// The hub's handle on one socket.
pub struct SocketHandle {
    pub id: SocketId,
    pub user: String,
    /// Frames waiting for the session to write them, at most `capacity`.
    queue: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    /// Told when a frame is queued; the session selects on it.
    ready: Notify,
    /// Told when the socket must close (slow consumer); the session selects on it.
    close: Notify,
    /// The chats whose rooms this socket joined (at most [`MAX_JOINED_CHATS`]), so that leaving
    /// the hub takes it out of each.
    rooms: Mutex<Vec<String>>,
}

impl SocketHandle {
    /// A socket whose queue holds at most `capacity` frames (`CHAT_SOCKET_QUEUE`).
    pub fn new(id: SocketId, user: String, capacity: usize) -> Self {
        SocketHandle {
            id,
            user,
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            close: Notify::new(),
            rooms: Mutex::new(Vec::new()),
        }
    }

    /// The chats this socket joined.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().clone()
    }

    /// Queues a frame; a full queue marks the socket a slow consumer and asks it to close.
    pub fn send(&self, frame: Bytes) {
        let mut queue = self.queue.lock();
        if queue.len() >= self.capacity {
            drop(queue);
            metrics::counter!("coursechat_slow_consumer_disconnects_total").increment(1);
            self.close.notify_one();
            return;
        }
        queue.push_back(frame);
        drop(queue);
        self.ready.notify_one();
    }

    /// Resolves once frames may be waiting (a permit is kept when none waits, so a frame queued
    /// between two takes is never missed).
    pub async fn frames_ready(&self) {
        self.ready.notified().await
    }

    /// Moves every queued frame into `into` (which must be empty) by swapping the two deques,
    /// so neither side allocates once both have grown to the usual burst.
    pub fn take_frames(&self, into: &mut VecDeque<Bytes>) {
        std::mem::swap(&mut *self.queue.lock(), into);
    }

    /// Asks the socket to close at the transport level; its client reconnects and recovers.
    pub fn request_close(&self) {
        self.close.notify_one();
    }

    /// Resolves when the hub asked this socket to close.
    pub async fn close_requested(&self) {
        self.close.notified().await
    }
}

#[derive(Default)]
pub struct Hub {
    users: RwLock<HashMap<String, Vec<Arc<SocketHandle>>>>,
    rooms: RwLock<HashMap<String, Vec<Arc<SocketHandle>>>>,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Hub::default())
    }

    /// Adds a socket; true when it is its user's first on this node.
    pub fn register(&self, socket: Arc<SocketHandle>) -> bool {
        let mut users = self.users.write();
        let sockets = users.entry(socket.user.clone()).or_default();
        sockets.push(socket);
        sockets.len() == 1
    }

    /// Removes the socket from its user (it must have left its rooms first); true when it was
    /// its user's last on this node.
    pub fn unregister(&self, socket: &SocketHandle) -> bool {
        remove(&mut self.users.write(), &socket.user, socket.id)
    }

    /// Puts the socket into the chat's room: `Ok(true)` when it is the room's first socket on
    /// this node, `Ok(false)` when the room had others or the socket was in it already.
    pub fn join(&self, chat_id: &str, socket: &Arc<SocketHandle>) -> Result<bool, TooManyRooms> {
        let mut joined = socket.rooms.lock();
        if joined.iter().any(|r| r == chat_id) {
            return Ok(false);
        }
        if joined.len() >= MAX_JOINED_CHATS {
            return Err(TooManyRooms);
        }
        joined.push(chat_id.to_owned());
        let mut rooms = self.rooms.write();
        let members = rooms.entry(chat_id.to_owned()).or_default();
        members.push(socket.clone());
        Ok(members.len() == 1)
    }

    /// Takes the socket out of the chat's room; true when it was the room's last socket on this
    /// node (false also when the socket was not in it).
    pub fn leave(&self, chat_id: &str, socket: &SocketHandle) -> bool {
        let mut joined = socket.rooms.lock();
        let Some(at) = joined.iter().position(|r| r == chat_id) else { return false };
        joined.swap_remove(at);
        remove(&mut self.rooms.write(), chat_id, socket.id)
    }

    /// How many sockets this node holds for `user`.
    pub fn sockets_of(&self, user: &str) -> usize {
        self.users.read().get(user).map_or(0, Vec::len)
    }

    /// Closes every socket of `user` on this node (transport close): they reconnect and recover
    /// what they missed through `join_chat {lastSeq}`.
    pub fn resync_user(&self, user: &str) {
        if let Some(sockets) = self.users.read().get(user) {
            metrics::counter!("coursechat_resync_disconnects_total").increment(sockets.len() as u64);
            sockets.iter().for_each(|s| s.request_close());
        }
    }

    /// Every user with a socket on this node, and how many.
    pub fn local_users(&self) -> Vec<(String, usize)> {
        self.users.read().iter().map(|(user, sockets)| (user.clone(), sockets.len())).collect()
    }

    pub fn socket_count(&self) -> usize {
        self.users.read().values().map(Vec::len).sum()
    }

    /// Hands the frame to every local recipient's queue.
    pub fn deliver(&self, delivery: &Delivery) {
        let send = |s: &Arc<SocketHandle>| {
            if Some(s.id) != delivery.except {
                s.send(delivery.frame.clone());
            }
        };
        match &delivery.target {
            Target::Users(users) => {
                let map = self.users.read();
                for user in users {
                    map.get(user).into_iter().flatten().for_each(send);
                }
            }
            Target::Room(chat) => {
                self.rooms.read().get(chat).into_iter().flatten().for_each(send);
            }
        }
    }
}

/// A socket at [`MAX_JOINED_CHATS`] asked to join one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a socket may join at most {MAX_JOINED_CHATS} chats")]
pub struct TooManyRooms;

/// Removes the socket from `key`'s list; true when that emptied the list.
fn remove(map: &mut HashMap<String, Vec<Arc<SocketHandle>>>, key: &str, socket: SocketId) -> bool {
    let Some(list) = map.get_mut(key) else { return false };
    let before = list.len();
    list.retain(|s| s.id != socket);
    if list.is_empty() {
        map.remove(key);
        return before > 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(id: SocketId, user: &str, cap: usize) -> (Arc<SocketHandle>, testing::Inbox) {
        let socket = Arc::new(SocketHandle::new(id, user.into(), cap));
        (socket.clone(), testing::Inbox::new(socket))
    }

    #[tokio::test]
    async fn delivers_to_every_socket_of_each_user_but_the_origin() {
        let hub = Hub::new();
        let (a1, mut ra1) = socket(1, "a", 4);
        let (a2, mut ra2) = socket(2, "a", 4);
        let (b1, mut rb1) = socket(3, "b", 4);
        assert!(hub.register(a1.clone()), "the user's first socket");
        assert!(!hub.register(a2.clone()), "a second device");
        assert!(hub.register(b1.clone()));
        hub.deliver(&Delivery {
            target: Target::Users(vec!["a".into(), "b".into()]),
            except: Some(1),
            frame: Bytes::from_static(b"x"),
        });
        assert!(ra1.try_next().is_none());
        assert_eq!(ra2.try_next().unwrap(), "x");
        assert_eq!(rb1.try_next().unwrap(), "x");
        assert!(!hub.unregister(&a2));
        assert_eq!(hub.sockets_of("a"), 1);
        assert!(hub.unregister(&a1), "the user's last socket");
    }

    #[tokio::test]
    async fn rooms_receive_only_after_join() {
        let hub = Hub::new();
        let (a, mut ra) = socket(1, "a", 4);
        hub.register(a.clone());
        let d = Delivery { target: Target::Room("c".into()), except: None, frame: Bytes::from_static(b"t") };
        hub.deliver(&d);
        assert!(ra.try_next().is_none());
        assert_eq!(hub.join("c", &a), Ok(true), "the room's first socket");
        assert_eq!(hub.join("c", &a), Ok(false), "joined already");
        let (b, _rb) = socket(2, "b", 4);
        hub.register(b.clone());
        assert_eq!(hub.join("c", &b), Ok(false), "the room has a socket already");
        hub.deliver(&d);
        assert_eq!(ra.try_next().unwrap(), "t");
        assert!(!hub.leave("c", &a));
        assert!(!hub.leave("c", &a), "not in the room any more");
        hub.deliver(&d);
        assert!(ra.try_next().is_none());
        assert!(hub.leave("c", &b), "the room's last socket");
        assert!(a.rooms().is_empty() && b.rooms().is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_asks_the_socket_to_close() {
        let hub = Hub::new();
        let (a, _ra) = socket(1, "a", 1);
        hub.register(a.clone());
        let d = Delivery { target: Target::Users(vec!["a".into()]), except: None, frame: Bytes::from_static(b"x") };
        hub.deliver(&d);
        hub.deliver(&d);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.close_requested()).await.unwrap();
    }

    #[test]
    fn a_socket_joins_at_most_the_bound() {
        let hub = Hub::new();
        let (a, _ra) = socket(1, "a", 1);
        hub.register(a.clone());
        for i in 0..MAX_JOINED_CHATS {
            assert_eq!(hub.join(&format!("c{i}"), &a), Ok(true));
        }
        assert_eq!(hub.join("one-more", &a), Err(TooManyRooms));
        assert_eq!(hub.join("c0", &a), Ok(false), "a room it is in is fine");
    }
}

/// Test support: reading what the hub queued for a socket, as its session would.
#[cfg(test)]
pub mod testing {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::SocketHandle;

    pub struct Inbox {
        socket: Arc<SocketHandle>,
        taken: VecDeque<Bytes>,
    }

    impl Inbox {
        pub fn new(socket: Arc<SocketHandle>) -> Self {
            Inbox { socket, taken: VecDeque::new() }
        }

        /// The next queued frame, if one is there now.
        pub fn try_next(&mut self) -> Option<Bytes> {
            if self.taken.is_empty() {
                self.socket.take_frames(&mut self.taken);
            }
            self.taken.pop_front()
        }

        /// The next frame, waiting for it up to `within`.
        pub async fn next(&mut self, within: Duration) -> Option<Bytes> {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                if let Some(frame) = self.try_next() {
                    return Some(frame);
                }
                if tokio::time::timeout_at(deadline, self.socket.frames_ready()).await.is_err() {
                    return None;
                }
            }
        }
    }
}
