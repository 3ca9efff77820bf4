//! One simulated client: a WebSocket-only Socket.IO connection authenticated with its JWT.
//!
//! A socket is one task. Once [`connection::open`] has connected it, the *read loop* drives the
//! read half (pongs, acks, deliveries, errors) and the *actor* shares the locked write half
//! (a student joins its chat and then sends on its schedule; a tutor only listens). Both run
//! inside the same task with `join!`, so there is no per-socket channel.
//! fastwebsockets' `read_frame` is not cancel-safe, which is why reading is never raced against
//! writing in a `select!`; it is only abandoned at the very end, when nothing is read any more.
//!
//! Sends are open loop: a student sends when its schedule says so, whether or not earlier acks
//! have come back, so a slow server shows up as latency rather than as a lower offered rate.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, Payload};
use tokio::sync::{oneshot, watch};

use crate::connection::{self, next_text, write_text, ConnectError, Reader, Target, Writer};
use crate::plan::Schedule;
use crate::probe;
use crate::protocol::{self, AckReply, ErrorBody, JoinChat, MessageReceived, Packet, SendMessage};
use crate::stats::{SeqCheck, SeqTracker, Stats};

/// Where the run is; every socket watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sockets are being opened; students join and wait.
    Connecting,
    /// Students send on their schedules from `start` until `end`.
    Sending { start: Instant, end: Instant },
    /// No more sends; acks and deliveries are still read.
    Draining,
    /// Close every socket.
    Closing,
}

/// What one socket does once connected.
pub enum Part {
    Student {
        /// Index in the plan, used in `clientMsgId`.
        index: usize,
        chat_id: String,
        schedule: Schedule,
    },
    Tutor,
}

/// Everything a socket task needs, shared by all of them.
#[derive(Clone)]
pub struct Shared {
    /// The node this socket connects to (one of `--url`'s list).
    pub target: Arc<Target>,
    pub stats: Arc<Stats>,
    pub phase: watch::Receiver<Phase>,
    /// Random per run, starts every `clientMsgId`.
    pub nonce: Arc<str>,
    pub content_size: usize,
    /// Bound on the connect handshake and on the `join_chat` ack.
    pub timeout: Duration,
}

/// How long a closing socket waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Runs one socket from connect to close. Every outcome ends up in `shared.stats`.
pub async fn run(part: Part, token: Arc<str>, shared: Shared) {
    let stats = shared.stats.clone();
    let started = Instant::now();
    let (mut reader, writer) =
        match tokio::time::timeout(shared.timeout, connection::open(&shared.target, &token)).await {
            Ok(Ok(halves)) => halves,
            Ok(Err(e)) => {
                stats.connect_failed(e.key(), || e.to_string());
                stats.setup_done();
                return;
            }
            Err(_) => {
                let e = ConnectError::Timeout;
                stats.connect_failed(e.key(), || format!("{e} ({:?})", shared.timeout));
                stats.setup_done();
                return;
            }
        };
    stats.connected(started.elapsed());

    let session = Session { writer, pending: Mutex::new(HashMap::new()), closed: watch::channel(false).0, shared };
    if matches!(part, Part::Tutor) {
        stats.setup_done();
    }
    tokio::join!(session.read_loop(&mut reader), session.act(part));
    session.close(&mut reader).await;
}

/// An ack the socket is waiting for.
enum Pending {
    Join(oneshot::Sender<Result<(), String>>),
    Send { sent_us: u64, measured: bool },
}

struct Session {
    writer: Writer,
    /// Ack id → what is waiting for it. Shared by the actor (inserts) and the read loop (removes).
    pending: Mutex<HashMap<u64, Pending>>,
    /// Set when the read loop ends, so the actor stops sending into a dead socket.
    closed: watch::Sender<bool>,
    shared: Shared,
}

/// What the read loop does after one frame.
enum Flow {
    Continue,
    Stop,
}

impl Session {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        // Inserting or removing one entry cannot leave the map inconsistent, even after a panic.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn read_loop(&self, reader: &mut Reader) {
        let stats = &self.shared.stats;
        let mut phase = self.shared.phase.clone();
        let mut seqs = SeqTracker::default();
        // Whether the connection died under us (rather than being left at Closing).
        let lost = loop {
            let next = tokio::select! {
                // Abandoning a half-read frame is fine: close() reads only to wait for the
                // server's close, and a frame cut in two then just ends that wait.
                _ = phase.wait_for(|p| *p == Phase::Closing) => break false,
                next = next_text(reader, &self.writer) => next,
            };
            let text = match next {
                Ok(Some(text)) => text,
                Ok(None) => {
                    self.lost("disconnect:websocket_close");
                    break true;
                }
                Err(e) => {
                    if *self.shared.phase.borrow() != Phase::Closing {
                        let key = format!("disconnect:{}", connection::ws_error_kind(&e));
                        stats.error_with_detail(key, || e.to_string());
                    }
                    break true;
                }
            };
            match self.on_text(&text, &mut seqs).await {
                Flow::Continue => {}
                Flow::Stop => break true,
            }
        };
        if lost {
            self.closed.send_replace(true);
        }
        // Dropping a pending join wakes its waiter; pending sends stay unanswered (counted at the end).
        let unanswered = {
            let mut pending = self.pending();
            let n = pending.values().filter(|p| matches!(p, Pending::Send { .. })).count();
            pending.clear();
            n
        };
        if lost && unanswered > 0 && *self.shared.phase.borrow() != Phase::Closing {
            for _ in 0..unanswered {
                stats.error("ack:connection_lost");
            }
        }
    }

    /// Counts an unexpected end of the connection (an expected one is during Closing).
    fn lost(&self, key: &str) {
        if *self.shared.phase.borrow() != Phase::Closing {
            self.shared.stats.error(key);
        }
    }

    async fn on_text(&self, text: &str, seqs: &mut SeqTracker) -> Flow {
        let stats = &self.shared.stats;
        let packet = match protocol::decode(text) {
            Ok(p) => p,
            Err(e) => {
                stats.error(format!("protocol:{}", e.code()));
                return Flow::Continue;
            }
        };
        match packet {
            Packet::Ping => {
                if write_text(&self.writer, protocol::PONG.to_string()).await.is_err() {
                    self.lost("disconnect:write_failed");
                    return Flow::Stop;
                }
            }
            Packet::Ack { id, data } => {
                let reply = protocol::ack_arg::<AckReply>(data).map(AckReply::result);
                let waiting = self.pending().remove(&id);
                match (waiting, reply) {
                    (Some(Pending::Join(tx)), reply) => {
                        let _ = tx.send(reply.unwrap_or_else(|e| Err(format!("bad_ack_{}", e.code()))));
                    }
                    (Some(Pending::Send { sent_us, measured }), Ok(result)) => stats.acked(sent_us, measured, result),
                    (Some(Pending::Send { sent_us, measured }), Err(e)) => {
                        stats.acked(sent_us, measured, Err(format!("bad_ack_{}", e.code())))
                    }
                    (None, _) => stats.error("protocol:unknown_ack_id"),
                }
            }
            Packet::Event { data, .. } => match protocol::event_name(data).as_deref() {
                Ok("message_received") => self.on_message(data, seqs),
                Ok("error") => {
                    let code =
                        protocol::event_arg::<ErrorBody>(data).map_or_else(|_| "no_code".to_string(), |e| e.code);
                    stats.error(format!("error_event:{code}"));
                }
                Ok(_) => {}
                Err(e) => stats.error(format!("protocol:{}", e.code())),
            },
            Packet::Disconnect => {
                self.lost("disconnect:server_disconnect");
                return Flow::Stop;
            }
            Packet::Close => {
                self.lost("disconnect:engine_close");
                return Flow::Stop;
            }
            Packet::Open(_) | Packet::Connect(_) | Packet::ConnectError(_) => {
                stats.error("protocol:unexpected_handshake")
            }
            Packet::Pong | Packet::Noop => {}
        }
        Flow::Continue
    }

    fn on_message(&self, data: &str, seqs: &mut SeqTracker) {
        let stats = &self.shared.stats;
        let counters = &stats.counters;
        let received = match protocol::event_arg::<MessageReceived>(data) {
            Ok(r) => r.message,
            Err(e) => {
                stats.error(format!("protocol:message_received_{}", e.code()));
                return;
            }
        };
        const WRAPPER: usize = r#"["message_received",{"message":"#.len() + "}]".len();
        counters.delivered_json_bytes.fetch_add(data.len().saturating_sub(WRAPPER) as u64, Relaxed);
        let sent_us = probe::sent_at_us(&received.content);
        let (true, Some(sent_us)) = (probe::is_ours(received.client_msg_id.as_deref(), &self.shared.nonce), sent_us)
        else {
            counters.foreign.fetch_add(1, Relaxed);
            return;
        };
        stats.delivered(sent_us);
        match seqs.check(&received.chat_id, received.seq) {
            SeqCheck::InOrder => {}
            SeqCheck::Gap(n) => {
                counters.seq_gaps.fetch_add(n, Relaxed);
            }
            SeqCheck::Repeat => {
                counters.seq_repeats.fetch_add(1, Relaxed);
            }
        }
    }

    /// The socket's own behaviour: a tutor does nothing; a student joins, waits for the start
    /// and sends on its schedule.
    async fn act(&self, part: Part) {
        let Part::Student { index, chat_id, schedule } = part else {
            return;
        };
        let stats = &self.shared.stats;
        let joined = self.join(&chat_id).await;
        match &joined {
            Ok(()) => stats.joined(),
            Err(code) => stats.join_failed(code),
        }
        stats.setup_done();
        if joined.is_err() {
            return;
        }

        let mut phase = self.shared.phase.clone();
        let Ok(current) = phase.wait_for(|p| *p != Phase::Connecting).await.map(|p| *p) else {
            return;
        };
        let Phase::Sending { start, end } = current else {
            return;
        };
        let mut closed = self.closed.subscribe();
        let first_due = start + schedule.offset;
        for n in 0u64.. {
            let due = first_due + schedule.period.mul_f64(n as f64);
            if due >= end {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = phase.wait_for(|p| matches!(p, Phase::Draining | Phase::Closing)) => break,
                _ = closed.wait_for(|c| *c) => break,
            }
            // Ack id 0 was the join.
            if !self.send(&chat_id, index, n, n + 1, due).await {
                break;
            }
        }
    }

    async fn join(&self, chat_id: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.pending().insert(0, Pending::Join(tx));
        let text = protocol::event(Some(0), "join_chat", &JoinChat { chat_id }).map_err(|_| "encode".to_string())?;
        if write_text(&self.writer, text).await.is_err() {
            return Err("write_failed".into());
        }
        match tokio::time::timeout(self.shared.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("connection_lost".into()),
            Err(_) => Err("timeout".into()),
        }
    }

    /// Sends message `n`, due at `due`, with ack id `ack_id`; false when the socket can no longer
    /// be written.
    async fn send(&self, chat_id: &str, index: usize, n: u64, ack_id: u64, due: Instant) -> bool {
        let stats = &self.shared.stats;
        let now = Instant::now();
        let sent_us = stats.us_at(now);
        let measured = stats.in_window(sent_us);
        let client_msg_id = probe::client_msg_id(&self.shared.nonce, index, n);
        let content = probe::content(sent_us, self.shared.content_size);
        let message = SendMessage { chat_id, client_msg_id: &client_msg_id, content: &content };
        let Ok(text) = protocol::event(Some(ack_id), "send_message", &message) else {
            stats.error("send:encode");
            return false;
        };
        self.pending().insert(ack_id, Pending::Send { sent_us, measured });
        stats.sent(measured, now.saturating_duration_since(due));
        if write_text(&self.writer, text).await.is_err() {
            self.pending().remove(&ack_id);
            stats.error("send:write_failed");
            return false;
        }
        true
    }

    /// Leaves politely: Socket.IO DISCONNECT, a WebSocket close frame, then a short wait for the
    /// server's close so it sees a clean end rather than a reset. Errors are moot here.
    async fn close(&self, reader: &mut Reader) {
        if *self.closed.borrow() {
            return;
        }
        {
            let mut writer = self.writer.lock().await;
            let disconnect = Frame::text(Payload::Borrowed(protocol::DISCONNECT.as_bytes()));
            if writer.write_frame(disconnect).await.is_err() {
                return;
            }
            if writer.write_frame(Frame::close(1000, b"")).await.is_err() {
                return;
            }
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Ok(Some(_)) = next_text(reader, &self.writer).await {}
        })
        .await;
    }
}
