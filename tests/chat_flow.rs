//! The chat flow over Socket.IO: join, send, multi-device delivery, idempotency, recovery,
//! typing, read receipts, and the rules that refuse (content, enrollment, blocks, rate limits).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn messages_reach_every_device_of_both_participants_but_the_sending_socket() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut student_phone = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut student_laptop = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut tutor_a = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let mut tutor_b = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let outsider_fixture = fixture(&server).await;
    let mut outsider = Client::connect(&server.addr, &outsider_fixture.student_token()).await.unwrap();

    let ack = send(&mut student_phone, &f.chat, "m1", "hello tutor").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let message = &ack["message"];
    assert_eq!(message["seq"], 1);
    assert_eq!(message["senderId"], f.student.as_str());
    assert_eq!(message["senderType"], "user");
    assert_eq!(message["type"], "text");
    assert_eq!(message["clientMsgId"], "m1");
    assert_eq!(message["chatId"], f.chat.as_str());
    assert_eq!(message["id"].as_str().unwrap().len(), 24);
    let created = message["createdAt"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "RFC 3339 with milliseconds: {created}");

    for socket in [&mut student_laptop, &mut tutor_a, &mut tutor_b] {
        let got = socket.event("message_received", WAIT).await.expect("delivered");
        assert_eq!(&got["message"], message);
    }
    student_phone.no_event("message_received", SHORT).await;
    outsider.no_event("message_received", SHORT).await;

    let reply = send(&mut tutor_b, &f.chat, "r1", "hello student").await;
    assert_eq!(reply["message"]["seq"], 2);
    assert_eq!(reply["message"]["senderType"], "tutor");
    for socket in [&mut student_phone, &mut student_laptop, &mut tutor_a] {
        assert_eq!(socket.event("message_received", WAIT).await.unwrap()["message"]["seq"], 2);
    }
    tutor_b.no_event("message_received", SHORT).await;
}

#[tokio::test]
async fn a_repeated_client_msg_id_returns_the_first_message_and_stores_nothing() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let first = send(&mut s, &f.chat, "same", "once").await;
    let again = send(&mut s, &f.chat, "same", "twice?").await;
    assert_eq!(first["message"], again["message"]);
    assert_eq!(again["message"]["content"], "once");
    assert!(t.event("message_received", WAIT).await.is_some());
    t.no_event("message_received", SHORT).await;
    // Scoped to (chat, sender): the tutor may use the same clientMsgId.
    let tutor_same = send(&mut t, &f.chat, "same", "mine").await;
    assert_eq!(tutor_same["message"]["seq"], 2);
    let page =
        http(&server.addr, "GET", &format!("/api/chats/{}/messages", f.chat), Some(&f.student_token()), None, &[])
            .await;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn seqs_are_contiguous_under_concurrent_senders() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let (chat_s, chat_t) = (f.chat.clone(), f.chat.clone());
    let a = tokio::spawn(async move {
        let mut seqs = vec![];
        for i in 0..15 {
            seqs.push(send(&mut s, &chat_s, &format!("s{i}"), "x").await["message"]["seq"].as_u64().unwrap());
        }
        seqs
    });
    let b = tokio::spawn(async move {
        let mut seqs = vec![];
        for i in 0..15 {
            seqs.push(send(&mut t, &chat_t, &format!("t{i}"), "y").await["message"]["seq"].as_u64().unwrap());
        }
        seqs
    });
    let mut all: Vec<u64> = a.await.unwrap().into_iter().chain(b.await.unwrap()).collect();
    all.sort();
    assert_eq!(all, (1..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn join_chat_returns_what_was_missed_after_last_seq() {
    let server = Server::start(&[("CHAT_MESSAGE_RATE", "10000"), ("CHAT_MESSAGE_BURST", "10000")]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    for i in 0..510 {
        assert_eq!(send(&mut s, &f.chat, &format!("m{i}"), &format!("n{i}")).await["ok"], true);
    }
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let joined = t.call("join_chat", json!({"chatId": f.chat})).await;
    assert_eq!(joined["ok"], true);
    assert_eq!(joined["missed"], json!([]), "no lastSeq: missed is empty");
    assert_eq!(joined["chat"]["id"], f.chat.as_str());
    assert_eq!(joined["chat"]["lastSeq"], 510);

    let joined = t.call("join_chat", json!({"chatId": f.chat, "lastSeq": 0})).await;
    let missed = joined["missed"].as_array().unwrap();
    assert_eq!(missed.len(), 500);
    assert_eq!(missed[0]["seq"], 1);
    assert_eq!(missed[499]["seq"], 500);
    assert_eq!(joined["hasMore"], true);
    let joined = t.call("join_chat", json!({"chatId": f.chat, "lastSeq": 500})).await;
    let seqs: Vec<u64> = joined["missed"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (501..=510).collect::<Vec<_>>());
    assert_eq!(joined["hasMore"], false);
}

#[tokio::test]
async fn a_client_that_reconnects_recovers_every_message_through_join() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    s.call("join_chat", json!({"chatId": f.chat})).await;
    send(&mut t, &f.chat, "a", "one").await;
    let last = s.event("message_received", WAIT).await.unwrap()["message"]["seq"].as_u64().unwrap();
    s.close().await;
    for (i, text) in ["two", "three", "four"].iter().enumerate() {
        send(&mut t, &f.chat, &format!("b{i}"), text).await;
    }
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let joined = s.call("join_chat", json!({"chatId": f.chat, "lastSeq": last})).await;
    let contents: Vec<&str> =
        joined["missed"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["two", "three", "four"]);
}

#[tokio::test]
async fn typing_reaches_the_room_and_expires_by_itself() {
    let server = Server::start(&[("CHAT_TYPING_TTL_MS", "800")]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let mut t_not_joined = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    assert_eq!(t.call("join_chat", json!({"chatId": f.chat})).await["ok"], true);
    assert_eq!(s.call("typing_start", json!({"chatId": f.chat})).await["ok"], true);
    let ind = t.event("typing_indicator", WAIT).await.unwrap();
    assert_eq!(ind, json!({"chatId": f.chat, "userId": f.student, "isTyping": true}));
    t_not_joined.no_event("typing_indicator", SHORT).await;
    s.no_event("typing_indicator", SHORT).await;
    s.emit("typing_stop", json!({"chatId": f.chat})).await;
    assert_eq!(t.event("typing_indicator", WAIT).await.unwrap()["isTyping"], false);
    // Expiry: no renewal within the TTL is announced like a stop.
    s.emit("typing_start", json!({"chatId": f.chat})).await;
    assert_eq!(t.event("typing_indicator", WAIT).await.unwrap()["isTyping"], true);
    let stop = t.event("typing_indicator", Duration::from_secs(3)).await.unwrap();
    assert_eq!(stop["isTyping"], false);
    // leave_chat: the socket no longer gets the room's indicators.
    assert_eq!(t.call("leave_chat", json!({"chatId": f.chat})).await["ok"], true);
    s.emit("typing_start", json!({"chatId": f.chat})).await;
    t.no_event("typing_indicator", Duration::from_millis(500)).await;
}

#[tokio::test]
async fn typing_is_rate_limited_per_socket() {
    let server = Server::start(&[("CHAT_TYPING_RATE", "5")]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut codes = vec![];
    for _ in 0..8 {
        let ack = s.call("typing_start", json!({"chatId": f.chat})).await;
        codes.push(ack["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert!(codes.iter().filter(|c| *c == "ok").count() >= 5);
    assert!(codes.contains(&"rate_limited".to_owned()), "{codes:?}");
}

#[tokio::test]
async fn mark_read_tells_every_socket_of_both_participants() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s1 = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut s2 = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    send(&mut t, &f.chat, "a", "one").await;
    send(&mut t, &f.chat, "b", "two").await;
    let ack = s1.call("mark_read", json!({"chatId": f.chat, "seq": 1})).await;
    assert_eq!(ack, json!({"ok": true}));
    for c in [&mut s1, &mut s2, &mut t] {
        let e = c.event("message_read", WAIT).await.unwrap();
        assert_eq!(
            (e["chatId"].as_str(), e["userId"].as_str(), e["seq"].as_u64()),
            (Some(f.chat.as_str()), Some(f.student.as_str()), Some(1))
        );
        assert!(e["readAt"].as_str().unwrap().ends_with('Z'));
    }
    // Backwards is no change (and no event); above the latest is the latest.
    s1.call("mark_read", json!({"chatId": f.chat, "seq": 0})).await;
    t.no_event("message_read", SHORT).await;
    s1.call("mark_read", json!({"chatId": f.chat, "seq": 99})).await;
    assert_eq!(t.event("message_read", WAIT).await.unwrap()["seq"], 2);
    // Sending moves the sender's cursor silently.
    send(&mut s1, &f.chat, "c", "three").await;
    t.no_event("message_read", SHORT).await;
    let chats = http(&server.addr, "GET", "/api/chats", Some(&f.student_token()), None, &[]).await;
    assert_eq!(chats.body["chats"][0]["readSeq"], 3);
    assert_eq!(chats.body["chats"][0]["unread"], 0);
}

#[tokio::test]
async fn content_rules_refuse_empty_control_and_oversized_content() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("ok").to_owned();
    assert_eq!(code(&send(&mut s, &f.chat, "e", "   ").await), "invalid_payload");
    assert_eq!(code(&send(&mut s, &f.chat, "c", "bell\u{7}").await), "invalid_payload");
    assert_eq!(code(&send(&mut s, &f.chat, "l", &"é".repeat(4001)).await), "too_large");
    let ok = send(&mut s, &f.chat, "k", &format!("  {}\n\t", "é".repeat(4000))).await;
    assert_eq!(code(&ok), "ok");
    assert!(ok["message"]["content"].as_str().unwrap().starts_with("  "), "stored as sent");
    assert_eq!(code(&s.call("send_message", json!({"chatId": f.chat, "content": "no id"})).await), "invalid_payload");
    assert_eq!(code(&send(&mut s, &f.chat, &"x".repeat(65), "long id").await), "invalid_payload");
    // Without an ack the failure comes as an `error` event naming the event.
    s.emit("send_message", json!({"chatId": f.chat, "clientMsgId": "z", "content": ""})).await;
    let e = s.event("error", WAIT).await.unwrap();
    assert_eq!((e["code"].as_str(), e["event"].as_str()), (Some("invalid_payload"), Some("send_message")));
}

#[tokio::test]
async fn chats_of_others_are_not_found() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let other = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    for event in ["join_chat", "typing_start", "mark_read"] {
        let ack = s.call(event, json!({"chatId": other.chat, "seq": 1})).await;
        assert_eq!(ack["error"]["code"], "not_found", "{event}");
    }
    assert_eq!(send(&mut s, &other.chat, "x", "hi").await["error"]["code"], "not_found");
    assert_eq!(send(&mut s, "not-an-id", "x", "hi").await["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_revoked_enrollment_stops_the_next_send_and_join() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    assert_eq!(send(&mut s, &f.chat, "a", "before").await["ok"], true);
    let r = http(
        &server.addr,
        "DELETE",
        &format!("/api/admin/enrollments/{}/{}", f.student, f.course),
        Some(&admin()),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204);
    let ack = send(&mut s, &f.chat, "b", "after").await;
    assert_eq!(ack["error"]["code"], "not_enrolled");
    assert_eq!(s.call("join_chat", json!({"chatId": f.chat})).await["error"]["code"], "not_enrolled");
    // The tutor's sends are refused too: the chat's student no longer has the course.
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    assert_eq!(send(&mut t, &f.chat, "t", "hi").await["error"]["code"], "not_enrolled");
    // A tutor removed from the course: not_tutor.
    http(
        &server.addr,
        "PUT",
        "/api/admin/enrollments",
        Some(&admin()),
        Some(json!({"userId": f.student, "courseId": f.course})),
        &[],
    )
    .await;
    assert_eq!(send(&mut s, &f.chat, "c", "back").await["ok"], true);
    http(
        &server.addr,
        "PUT",
        &format!("/api/admin/courses/{}", f.course),
        Some(&admin()),
        Some(json!({"title": "Course", "tutorIds": []})),
        &[],
    )
    .await;
    assert_eq!(send(&mut s, &f.chat, "d", "gone").await["error"]["code"], "not_tutor");
}

#[tokio::test]
async fn a_blocked_user_cannot_send_to_the_blocker() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let r = http(&server.addr, "POST", "/api/blocks", Some(&f.tutor_token()), Some(json!({"userId": f.student})), &[])
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(send(&mut s, &f.chat, "a", "hello?").await["error"]["code"], "blocked");
    t.no_event("message_received", SHORT).await;
    assert_eq!(send(&mut t, &f.chat, "b", "the blocker may still write").await["ok"], true);
    let r =
        http(&server.addr, "DELETE", &format!("/api/blocks/{}", f.student), Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(send(&mut s, &f.chat, "c", "hello again").await["ok"], true);
}

#[tokio::test]
async fn sends_past_the_burst_are_rate_limited() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut s2 = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..30 {
        // Spread over two devices: the allowance is per user, not per socket.
        let c = if i % 2 == 0 { &mut s } else { &mut s2 };
        match send(c, &f.chat, &format!("m{i}"), "spam").await["error"]["code"].as_str() {
            None => ok += 1,
            Some("rate_limited") => limited += 1,
            Some(other) => panic!("unexpected {other}"),
        }
    }
    assert!((20..=23).contains(&ok), "burst of 20 (plus refill), got {ok}");
    assert_eq!(ok + limited, 30);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(send(&mut s, &f.chat, "later", "ok").await["ok"], true, "the allowance refills");
}

#[tokio::test]
async fn a_socket_that_stops_reading_is_disconnected_not_buffered() {
    let server = Server::start(&[
        ("CHAT_SOCKET_QUEUE", "8"),
        ("CHAT_PING_TIMEOUT_MS", "1500"),
        ("CHAT_PING_INTERVAL_MS", "60000"),
        ("CHAT_MESSAGE_RATE", "100000"),
        ("CHAT_MESSAGE_BURST", "100000"),
    ]);
    let f = fixture(&server).await;
    let mut stuck = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let mut sender = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    // More than the loopback socket buffers can hold, while `stuck` reads nothing.
    let big = "x".repeat(3900);
    for i in 0..5000 {
        assert_eq!(send(&mut sender, &f.chat, &format!("m{i}"), &big).await["ok"], true, "the sender is never held up");
    }
    assert!(stuck.closed_within(Duration::from_secs(20)).await, "the slow consumer's transport is closed");
    let metrics = http(&server.addr, "GET", "/metrics", None, None, &[]).await;
    let text = String::from_utf8(metrics.raw).unwrap();
    assert!(text.contains("reason=\"slow_consumer\""), "counted as a slow consumer");
}
