//! This node's sockets: by user (for `message_received`, `message_read`, presence) and by chat
//! room (for typing indicators). The fan-out bus hands every event here; the hub puts the one
//! encoded frame into each recipient's bounded write queue.
//!
//! The hub is the one record of which socket listens to what: each change says whether it was
//! the first or the last socket of its user or room on this node, which is when the node
//! subscribes the bus to that topic or unsubscribes it ([`crate::node`]).
//!
//! A frame for an idle socket is written through to it by whoever delivers it (the committer
//! thread, a bus task), so the socket's task is not woken to write one frame ([`Outbox`]).
//!
//! Queue policy: a socket whose write queue is full is a slow consumer. It is told to close
//! (transport close, so its client reconnects and recovers through `join_chat {lastSeq}`), never
//! buffered without bound and never allowed to stall delivery to the others. The queue is a
//! deque the session swaps with its own when it writes, so an idle socket's queue holds no
//! allocation beyond a few slots, and a busy one allocates nothing per frame.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::protocol::websocket::{encode_header, header_len, Opcode, MAX_HEADER};

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
    /// Frames waiting for the session to write them (at most `capacity`), and who writes now.
    out: Mutex<Outbox>,
    capacity: usize,
    /// Told when a frame is queued or the socket must close; the session selects on it (one
    /// notification for both keeps every socket's task smaller).
    ready: Notify,
    /// Set when the socket must close (a slow consumer, or its user resynced).
    close: AtomicBool,
    /// The chats whose rooms this socket joined (at most [`MAX_JOINED_CHATS`]), so that leaving
    /// the hub takes it out of each.
    rooms: Mutex<Vec<String>>,
}

/// The write side of one socket, under the handle's lock.
///
/// Write-through: when nothing is queued and the session is not writing, [`SocketHandle::send`]
/// writes the frame to the socket itself, without waking the session's task (a wake from the
/// committer thread costs more than the write). What the kernel does not take at once is
/// queued for the session, which then writes everything in order; while the session writes
/// (its own frames too), nothing is written through, so frames never interleave.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    /// The rest of a frame the kernel took part of, written before anything else.
    rest: Option<Bytes>,
    /// The session is writing.
    writing: bool,
    /// Where frames may be written through (a websocket over TCP, until its session ends).
    stream: Option<Arc<TcpStream>>,
}

impl SocketHandle {
    /// A socket whose queue holds at most `capacity` frames (`CHAT_SOCKET_QUEUE`).
    pub fn new(id: SocketId, user: String, capacity: usize) -> Self {
        SocketHandle {
            id,
            user,
            out: Mutex::new(Outbox::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            close: AtomicBool::new(false),
            rooms: Mutex::new(Vec::new()),
        }
    }

    /// Lets [`send`](Self::send) write text frames to `stream` itself while nothing is queued,
    /// from the end of the session's next write on (its CONNECT ack: no event may precede it).
    pub fn with_stream(self, stream: Option<Arc<TcpStream>>) -> Self {
        let mut out = self.out.lock();
        out.writing = stream.is_some();
        out.stream = stream;
        drop(out);
        self
    }

    /// The chats this socket joined.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().clone()
    }

    /// Writes the frame through when the socket is idle, else queues it; a full queue marks the
    /// socket a slow consumer and asks it to close.
    pub fn send(&self, frame: Bytes) {
        let mut out = self.out.lock();
        if out.frames.is_empty() && out.rest.is_none() && !out.writing {
            if let Some(stream) = &out.stream {
                match write_through(stream, &frame) {
                    Through::All => return,
                    Through::Part(rest) => {
                        out.rest = Some(rest);
                        drop(out);
                        self.ready.notify_one();
                        return;
                    }
                    Through::Nothing => {}
                }
            }
        }
        if out.frames.len() >= self.capacity {
            drop(out);
            metrics::counter!("coursechat_slow_consumer_disconnects_total").increment(1);
            self.request_close();
            return;
        }
        out.frames.push_back(frame);
        drop(out);
        self.ready.notify_one();
    }

    /// Resolves once frames may be waiting or a close was asked for (a permit is kept when none
    /// waits, so nothing between two takes is missed); see [`close_requested`](Self::close_requested).
    pub async fn frames_ready(&self) {
        self.ready.notified().await
    }

    /// The session starts writing (nothing is written through until [`end_write`]): returns the
    /// rest of a frame written through in part, which goes first, and with `queued`, takes the
    /// queued frames too, by swapping the two deques (`queued` must be empty), so neither side
    /// allocates once both have grown to the usual burst.
    ///
    /// [`end_write`]: Self::end_write
    pub fn begin_write(&self, queued: Option<&mut VecDeque<Bytes>>) -> Option<Bytes> {
        let mut out = self.out.lock();
        out.writing = true;
        if let Some(into) = queued {
            std::mem::swap(&mut out.frames, into);
        }
        out.rest.take()
    }

    /// The session's write is over.
    pub fn end_write(&self) {
        self.out.lock().writing = false;
    }

    /// The session is ending: from now on frames are only queued (nothing may follow its close
    /// frame).
    pub fn detach(&self) {
        self.out.lock().stream = None;
    }

    /// Asks the socket to close at the transport level; its client reconnects and recovers.
    pub fn request_close(&self) {
        self.close.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// Whether the hub asked this socket to close.
    pub fn close_requested(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }
}

enum Through {
    All,
    /// The kernel took part: the rest of the frame.
    Part(Bytes),
    /// The kernel took nothing (its buffer is full, or the socket failed: the session finds out).
    Nothing,
}

/// One text frame written to `stream` now, as far as the kernel takes it.
fn write_through(stream: &TcpStream, frame: &Bytes) -> Through {
    let total = header_len(frame.len()) + frame.len();
    match write_frames_now(stream, Opcode::Text, std::slice::from_ref(frame)) {
        Ok(None) => Through::All,
        Ok(Some(rest)) if rest.len() < total => Through::Part(rest.into()),
        Ok(Some(_)) | Err(_) => Through::Nothing,
    }
}

/// Frames one vectored write carries at most (two slices each, well under `IOV_MAX`).
const FRAMES_PER_WRITE: usize = 32;

/// Writes frames back to back without waiting: vectored writes straight from the frames (up to
/// [`FRAMES_PER_WRITE`] a call, headers on the stack) while the kernel takes them. Returns the
/// bytes it did not take, if any, as one buffer. The one write of frames to a socket: the
/// session's ([`crate::session`]) and the hub's write-through both use it.
pub fn write_frames_now<B: AsRef<[u8]>>(
    stream: &TcpStream,
    opcode: Opcode,
    frames: &[B],
) -> io::Result<Option<Vec<u8>>> {
    let mut chunks = frames.chunks(FRAMES_PER_WRITE);
    while let Some(chunk) = chunks.next() {
        let mut headers = [[0u8; MAX_HEADER]; FRAMES_PER_WRITE];
        let mut lens = [0usize; FRAMES_PER_WRITE];
        for (i, frame) in chunk.iter().enumerate() {
            lens[i] = encode_header(&mut headers[i], opcode, frame.as_ref().len());
        }
        let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
        for (i, frame) in chunk.iter().enumerate() {
            slices[2 * i] = IoSlice::new(&headers[i][..lens[i]]);
            slices[2 * i + 1] = IoSlice::new(frame.as_ref());
        }
        let mut left = &mut slices[..2 * chunk.len()];
        while !left.is_empty() {
            match stream.try_write_vectored(left) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut rest: Vec<u8> = left.iter().flat_map(|s| s.iter().copied()).collect();
                    for frame in chunks.flatten() {
                        let mut header = [0u8; MAX_HEADER];
                        let n = encode_header(&mut header, opcode, frame.as_ref().len());
                        rest.extend_from_slice(&header[..n]);
                        rest.extend_from_slice(frame.as_ref());
                    }
                    return Ok(Some(rest));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
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

    /// A connected TCP pair: the server's end, shared as a session shares it, and the client's.
    async fn tcp_pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    async fn read_some(client: &mut TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf)).await.unwrap().unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn an_idle_socket_gets_frames_written_through_and_a_writing_one_gets_them_queued() {
        let (server, mut client) = tcp_pair().await;
        let socket = Arc::new(SocketHandle::new(1, "a".into(), 4).with_stream(Some(server)));
        let mut inbox = testing::Inbox::new(socket.clone());

        socket.send(Bytes::from_static(b"before the ack"));
        assert_eq!(inbox.try_next().as_deref(), Some(&b"before the ack"[..]), "nothing precedes the CONNECT ack");
        socket.end_write();

        socket.send(Bytes::from_static(b"42[1]"));
        assert_eq!(read_some(&mut client).await, b"\x81\x0542[1]", "one whole text frame, written through");
        assert!(inbox.try_next().is_none());

        assert!(socket.begin_write(None).is_none());
        socket.send(Bytes::from_static(b"42[2]"));
        assert_eq!(inbox.try_next().as_deref(), Some(&b"42[2]"[..]), "queued while the session writes");
        socket.end_write();

        socket.detach();
        socket.send(Bytes::from_static(b"42[3]"));
        assert_eq!(inbox.try_next().as_deref(), Some(&b"42[3]"[..]), "queued once the session ends");
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
        tokio::time::timeout(std::time::Duration::from_secs(1), a.frames_ready()).await.unwrap();
        assert!(a.close_requested());
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
                self.socket.begin_write(Some(&mut self.taken));
                self.socket.end_write();
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
