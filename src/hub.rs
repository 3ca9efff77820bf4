//! This node's sockets: by user (for `message_received`, `message_read`, presence) and by chat
//! room (for typing indicators). The fan-out bus hands every event here; the hub puts the one
//! encoded frame into each recipient's bounded write queue.
//!
//! Queue policy: a socket whose write queue is full is a slow consumer. It is told to close
//! (transport close, so its client reconnects and recovers through `join_chat {lastSeq}`), never
//! buffered without bound and never allowed to stall delivery to the others.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::{mpsc, Notify};

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

/// The hub's handle on one socket.
pub struct SocketHandle {
    pub id: SocketId,
    pub user: String,
    queue: mpsc::Sender<Bytes>,
    /// Told when the socket must close (slow consumer); the session selects on it.
    close: Notify,
}

impl SocketHandle {
    pub fn new(id: SocketId, user: String, queue: mpsc::Sender<Bytes>) -> Self {
        SocketHandle { id, user, queue, close: Notify::new() }
    }

    /// Queues a frame; a full queue marks the socket a slow consumer and asks it to close.
    pub fn send(&self, frame: Bytes) {
        match self.queue.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("coursechat_slow_consumer_disconnects_total").increment(1);
                self.close.notify_one();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
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

    pub fn register(&self, socket: Arc<SocketHandle>) {
        self.users.write().entry(socket.user.clone()).or_default().push(socket);
    }

    /// Removes the socket from its user and from every room it joined.
    pub fn unregister(&self, socket: &SocketHandle, rooms: &[String]) {
        remove(&mut self.users.write(), &socket.user, socket.id);
        let mut all = self.rooms.write();
        for room in rooms {
            remove(&mut all, room, socket.id);
        }
    }

    pub fn join(&self, chat_id: &str, socket: &Arc<SocketHandle>) {
        let mut rooms = self.rooms.write();
        let members = rooms.entry(chat_id.to_owned()).or_default();
        if !members.iter().any(|s| s.id == socket.id) {
            members.push(socket.clone());
        }
    }

    pub fn leave(&self, chat_id: &str, socket: SocketId) {
        remove(&mut self.rooms.write(), chat_id, socket);
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

fn remove(map: &mut HashMap<String, Vec<Arc<SocketHandle>>>, key: &str, socket: SocketId) {
    if let Some(list) = map.get_mut(key) {
        list.retain(|s| s.id != socket);
        if list.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(id: SocketId, user: &str, cap: usize) -> (Arc<SocketHandle>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(cap);
        (Arc::new(SocketHandle::new(id, user.into(), tx)), rx)
    }

    #[tokio::test]
    async fn delivers_to_every_socket_of_each_user_but_the_origin() {
        let hub = Hub::new();
        let (a1, mut ra1) = socket(1, "a", 4);
        let (a2, mut ra2) = socket(2, "a", 4);
        let (b1, mut rb1) = socket(3, "b", 4);
        for s in [&a1, &a2, &b1] {
            hub.register(s.clone());
        }
        hub.deliver(&Delivery {
            target: Target::Users(vec!["a".into(), "b".into()]),
            except: Some(1),
            frame: Bytes::from_static(b"x"),
        });
        assert!(ra1.try_recv().is_err());
        assert_eq!(ra2.try_recv().unwrap(), "x");
        assert_eq!(rb1.try_recv().unwrap(), "x");
        hub.unregister(&a2, &[]);
        assert_eq!(hub.sockets_of("a"), 1);
    }

    #[tokio::test]
    async fn rooms_receive_only_after_join() {
        let hub = Hub::new();
        let (a, mut ra) = socket(1, "a", 4);
        hub.register(a.clone());
        let d = Delivery { target: Target::Room("c".into()), except: None, frame: Bytes::from_static(b"t") };
        hub.deliver(&d);
        assert!(ra.try_recv().is_err());
        hub.join("c", &a);
        hub.deliver(&d);
        assert_eq!(ra.try_recv().unwrap(), "t");
        hub.unregister(&a, &["c".into()]);
        hub.deliver(&d);
        assert!(ra.try_recv().is_err());
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
}
