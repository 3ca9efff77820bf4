//! Presence, token lifetimes, restarts, drain and the audit log: what happens around sockets
//! rather than inside them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn presence_goes_online_and_offline_after_the_grace_period_without_flapping() {
    let server = Server::start(&[("CHAT_PRESENCE_GRACE_MS", "1000")]);
    let f = fixture(&server).await;
    let mut tutor = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let phone = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    assert_eq!(tutor.event("user_online", Duration::from_secs(2)).await.unwrap(), json!({"userId": f.student}));
    let laptop = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    tutor.no_event("user_online", Duration::from_millis(300)).await;
    // One device leaves: still online.
    phone.close().await;
    tutor.no_event("user_offline", Duration::from_millis(1500)).await;
    // The last device leaves and comes back within the grace period: nothing at all.
    laptop.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    tutor.no_event("user_online", Duration::from_millis(1500)).await;
    assert!(tutor.inbox.iter().all(|(n, _)| n != "user_offline"));
    // Gone for good: one user_offline after the grace period.
    let gone_at = Instant::now();
    back.close().await;
    let offline = tutor.event("user_offline", Duration::from_secs(4)).await.unwrap();
    assert!(gone_at.elapsed() >= Duration::from_millis(900));
    assert_eq!(offline["userId"], f.student.as_str());
    assert!(offline["lastSeen"].as_str().unwrap().ends_with('Z'));
    let chats = http(&server.addr, "GET", "/api/chats", Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(chats.body["chats"][0]["participants"][0]["online"], false);
    assert_eq!(chats.body["chats"][0]["participants"][1]["online"], true);
}

#[tokio::test]
async fn an_expiring_token_ends_the_session_unless_refreshed() {
    // A live socket ends at exp + leeway, the rule that admitted its token.
    let server = Server::start(&[("CHAT_JWT_LEEWAY", "1")]);
    let f = fixture(&server).await;
    let mut short = Client::connect(&server.addr, &token(&f.student, "user", 2)).await.unwrap();
    let mut refreshed = Client::connect(&server.addr, &token(&f.student, "user", 2)).await.unwrap();
    let ack = refreshed.call("refresh_token", json!({"token": token(&f.student, "user", 3600)})).await;
    assert_eq!(ack["ok"], true);
    assert!(ack["exp"].as_i64().unwrap() > now_secs() + 3000);
    let ack = refreshed.call("refresh_token", json!({"token": token("someone-else", "user", 3600)})).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "forbidden");
    let ack = refreshed.call("refresh_token", json!({"token": "junk"})).await;
    assert_eq!(ack["error"]["code"], "invalid_token");

    let err = short.event("error", Duration::from_secs(5)).await.expect("token_expired error");
    assert_eq!(err["code"], "token_expired");
    assert!(short.closed_within(Duration::from_secs(2)).await);
    assert!(short.server_disconnected, "a Socket.IO DISCONNECT so the client does not reconnect by itself");
    // The refreshed socket lives on.
    assert_eq!(refreshed.call("join_chat", json!({"chatId": f.chat})).await["ok"], true);
}

#[tokio::test]
async fn history_and_seq_survive_a_restart_on_the_same_data_dir() {
    let mut server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    for i in 1..=5 {
        assert_eq!(send(&mut s, &f.chat, &format!("m{i}"), &format!("n{i}")).await["ok"], true);
    }
    s.call("mark_read", json!({"chatId": f.chat, "seq": 5})).await;
    // SIGKILL: acked messages must survive without a drain.
    server.kill();
    server.restart();
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let page =
        http(&server.addr, "GET", &format!("/api/chats/{}/messages", f.chat), Some(&f.student_token()), None, &[])
            .await;
    let seqs: Vec<u64> = page.body["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(send(&mut s, &f.chat, "m6", "after restart").await["message"]["seq"], 6);
    assert!(send(&mut s, &f.chat, "m3", "dup").await["message"]["content"] == "n3", "dedupe survives the restart");
    let chats = http(&server.addr, "GET", "/api/chats", Some(&f.student_token()), None, &[]).await;
    assert_eq!(chats.body["chats"][0]["readSeq"], 6);
    // A graceful stop flushes the queue and exits 0.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    server.restart();
    let page =
        http(&server.addr, "GET", &format!("/api/chats/{}/messages", f.chat), Some(&f.student_token()), None, &[])
            .await;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn sigterm_drains_readiness_first_then_sockets_then_exits_zero() {
    let mut server = Server::start(&[("CHAT_DRAIN_SECONDS", "3")]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (server, status)
    });
    assert!(s.closed_within(Duration::from_secs(3)).await, "sockets are closed at the transport level");
    assert!(!s.server_disconnected, "no Socket.IO DISCONNECT: the client should reconnect elsewhere");
    let (_server, status) = status.await.unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn the_audit_log_records_calls_connections_and_joins_without_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let server = Server::start(&[("CHAT_AUDIT_LOG", path.to_str().unwrap()), ("CHAT_NODE_ID", "node-a")]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    s.call("join_chat", json!({"chatId": f.chat})).await;
    send(&mut s, &f.chat, "m", "a secret message").await;
    let _ = Client::connect(&server.addr, "bad").await;
    s.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = lines.iter().map(|l| l["action"].as_str().unwrap()).collect();
    for wanted in [
        "PUT /api/admin/enrollments",
        "POST /api/chats",
        "socket_connect",
        "join_chat",
        "socket_refused",
        "socket_disconnect",
    ] {
        assert!(actions.contains(&wanted), "{wanted} missing from {actions:?}");
    }
    let join = lines.iter().find(|l| l["action"] == "join_chat").unwrap();
    assert_eq!(join["node"], "node-a");
    assert_eq!(join["user"], f.student.as_str());
    assert_eq!(join["target"], f.chat.as_str());
    assert_eq!(join["result"], "ok");
    assert!(join["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(join["time"].as_str().unwrap().ends_with('Z'));
    assert!(!log.contains("a secret message"));
}

#[tokio::test]
async fn readiness_turns_503_at_once_on_sigterm_for_open_connections() {
    let mut server = Server::start(&[]);
    let f = fixture(&server).await;
    let _socket = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    // A keep-alive connection a load balancer would use for health checks.
    let mut probe = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let ask = format!("GET /readyz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    probe.write_all(ask.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = probe.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let pid_done = tokio::task::spawn_blocking(move || server.terminate());
    tokio::time::sleep(Duration::from_millis(100)).await;
    probe.write_all(ask.as_bytes()).await.unwrap();
    let n = probe.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("draining"));
    assert!(pid_done.await.unwrap().success());
}
