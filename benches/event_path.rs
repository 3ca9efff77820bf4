//! Micro-benchmarks of the inbound event path: decoding a `send_message` EVENT packet with the
//! parser the server uses (simd-json, `coursechat::json`) against serde_json over the same typed
//! payload, and encoding a fanned-out `message_received` frame.
//!
//! `cargo bench --bench event_path`. A benchmark, not a test: it prints ns per operation.

use std::hint::black_box;
use std::time::Instant;

use coursechat::events::{decode_client_event, message_received_frame, ClientEvent, SendMessage};
use coursechat::protocol::SioHeader;

const PACKET: &str = r#"2117["send_message",{"chatId":"6b0600f7677ef21ca5990c95","clientMsgId":"3f1c9a52-0e37-4c43-9d7e-2f4b8f5d9a10","content":"Hello! I have a question about lifetimes in chapter 4: why does the borrow checker reject returning a reference to a local?"}]"#;

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per_op = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<48} {per_op:>9.0} ns/op");
}

fn main() {
    // `cargo test --all-targets` runs this once as a smoke test (no `--bench` argument).
    let iterations = if std::env::args().any(|a| a == "--bench") { 200_000 } else { 1_000 };
    let packet = PACKET.as_bytes().to_vec();
    let header = SioHeader::decode(&packet).expect("valid packet");
    let data = packet[header.data_offset..].to_vec();

    measure("header decode (SioHeader::decode)", iterations, || {
        black_box(SioHeader::decode(black_box(&packet)).ok());
    });
    measure("event decode, simd-json (server's path)", iterations, || {
        let mut buf = data.clone();
        let event = decode_client_event(black_box(&mut buf)).ok();
        black_box(event);
    });
    measure("event decode, serde_json (alternative)", iterations, || {
        let buf = data.clone();
        let parsed: Option<(String, SendMessage)> = serde_json::from_slice(black_box(&buf)).ok();
        black_box(parsed.map(|(_, p)| ClientEvent::SendMessage(p)));
    });
    let message = br#"{"id":"6b0600f7677ef21ca5990c96","chatId":"6b0600f7677ef21ca5990c95","seq":42,"senderId":"student-bob","senderType":"user","type":"text","content":"Hello!","clientMsgId":"c1","createdAt":"2026-11-24T21:26:15.983Z"}"#;
    measure("message_received frame encode (once per send)", iterations, || {
        black_box(message_received_frame(black_box(message)));
    });
}
