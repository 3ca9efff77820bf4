//! Micro-benchmarks of a message's path through one node (divan):
//!
//! - the codec: a websocket frame header, the Socket.IO header, the `send_message` event with the
//!   parser the server uses (simd-json, `coursechat::json`) and with serde_json for comparison;
//! - encoding the fanned-out `message_received` frame (once per send);
//! - fan-out: one `message_received` frame encoded and handed to N local sockets' queues, with
//!   the allocations per iteration (divan's `AllocProfiler`), which must not grow with N;
//! - the durable append: a batch of records into the in-process queue's segment log, on the data
//!   disk (`write` + `fdatasync`) and on tmpfs (`/dev/shm`, where the sync costs nothing), which
//!   tells the sync's share apart.
//!
//! `cargo bench --bench hot_path`. A benchmark, not a test: it prints times per operation
//! (`cargo test --all-targets` runs each once).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use coursechat::engine::memory::segments::SegmentLog;
use coursechat::events::{decode_client_event, message_received_frame, ClientEvent, SendMessage};
use coursechat::hub::{Delivery, Hub, SocketHandle, Target};
use coursechat::protocol::websocket::{FrameHeader, Opcode};
use coursechat::protocol::SioHeader;
use divan::Bencher;

/// Counts allocations too: divan prints them per iteration beside the times.
#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const PACKET: &str = r#"2117["send_message",{"chatId":"6b0600f7677ef21ca5990c95","clientMsgId":"3f1c9a52-0e37-4c43-9d7e-2f4b8f5d9a10","content":"Hello! I have a question about lifetimes in chapter 4: why does the borrow checker reject returning a reference to a local?"}]"#;

const MESSAGE: &[u8] = br#"{"id":"6b0600f7677ef21ca5990c96","chatId":"6b0600f7677ef21ca5990c95","seq":42,"senderId":"student-bob","senderType":"user","type":"text","content":"Hello!","clientMsgId":"c1","createdAt":"2026-11-24T21:26:15.983Z"}"#;

fn event_data() -> Vec<u8> {
    let packet = PACKET.as_bytes();
    let header = SioHeader::decode(packet).expect("valid packet");
    packet[header.data_offset..].to_vec()
}

#[divan::bench]
fn websocket_header_parse(bencher: Bencher) {
    // A masked client text frame of the packet above.
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend_from_slice(&(PACKET.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(PACKET.as_bytes());
    bencher.bench(|| FrameHeader::parse(black_box(&frame), 65536).ok().flatten().map(|h| h.opcode == Opcode::Text));
}

#[divan::bench]
fn socketio_header_decode(bencher: Bencher) {
    let packet = PACKET.as_bytes().to_vec();
    bencher.bench(|| SioHeader::decode(black_box(&packet)).ok());
}

#[divan::bench]
fn event_decode_simd_json(bencher: Bencher) {
    let data = event_data();
    bencher.with_inputs(|| data.clone()).bench_local_refs(|buf| decode_client_event(black_box(buf)).ok());
}

#[divan::bench]
fn event_decode_serde_json(bencher: Bencher) {
    let data = event_data();
    bencher.with_inputs(|| data.clone()).bench_local_refs(|buf| {
        let parsed: Option<(String, SendMessage)> = serde_json::from_slice(black_box(buf)).ok();
        parsed.map(|(_, p)| ClientEvent::SendMessage(p))
    });
}

#[divan::bench]
fn message_received_encode(bencher: Bencher) {
    bencher.bench(|| message_received_frame(black_box(MESSAGE)));
}

/// One frame to every socket of `n` users (one socket each), as a message to a room of `n`.
#[divan::bench(args = [1, 2, 16, 256])]
fn fan_out_to_local_sockets(bencher: Bencher, n: usize) {
    let hub = Hub::new();
    let mut sockets = Vec::new();
    let mut users = Vec::new();
    for i in 0..n {
        let socket = Arc::new(SocketHandle::new(i as u64 + 1, format!("u{i}"), 1 << 16));
        hub.register(socket.clone());
        sockets.push(socket);
        users.push(format!("u{i}"));
    }
    let mut delivery = Delivery { target: Target::Users(users), except: None, frame: Bytes::new() };
    let mut taken = std::collections::VecDeque::new();
    bencher.bench_local(|| {
        // The frame as the committer makes it once per send, then shared by every recipient:
        // the allocations per iteration must not grow with `n`.
        delivery.frame = message_received_frame(MESSAGE);
        hub.deliver(black_box(&delivery));
        // What each session does when it writes: take the queued frames.
        for socket in &sockets {
            socket.begin_write(Some(&mut taken));
            socket.end_write();
            taken.clear();
        }
    });
}

fn append_batches(bencher: Bencher, dir: &std::path::Path, batch: usize) {
    let (mut log, _) = SegmentLog::open(dir, 16 * 1024 * 1024).expect("segment log");
    let records: Vec<&[u8]> = vec![MESSAGE; batch];
    bencher.bench_local(|| log.append(black_box(&records)).expect("append"));
}

/// A batch of sends into the durable queue on the data disk: one write and one `fdatasync`.
#[divan::bench(args = [1, 8, 64], sample_count = 20, sample_size = 10)]
fn durable_append_fsync(bencher: Bencher, batch: usize) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    append_batches(bencher, dir.path(), batch);
}

/// The same on tmpfs, where the sync has nothing to flush: the append's CPU cost without the
/// disk.
#[divan::bench(args = [1, 8, 64], sample_count = 20, sample_size = 10)]
fn durable_append_no_disk(bencher: Bencher, batch: usize) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().expect("tempdir"));
    append_batches(bencher, dir.path(), batch);
}
