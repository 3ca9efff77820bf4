//! The wire protocol as `socket.io-client` meets it: handshake, CONNECT with a token,
//! CONNECT_ERROR codes, heartbeat, transports, origins, frame limits and malformed input.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn open_packet_carries_the_handshake_settings() {
    let server = Server::start(&[("CHAT_PING_INTERVAL_MS", "1500"), ("CHAT_PING_TIMEOUT_MS", "1000")]);
    let (_ws, open) = open_transport(&server.addr, &[]).await.unwrap();
    assert!(open["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], 1500);
    assert_eq!(open["pingTimeout"], 1000);
    assert_eq!(open["maxPayload"], 65536);
}

#[tokio::test]
async fn connect_with_a_valid_token_gets_a_sid() {
    let server = Server::start(&[]);
    let c = Client::connect(&server.addr, &token("u1", "user", 60)).await.unwrap();
    assert!(!c.sid.is_empty());
}

#[tokio::test]
async fn bad_tokens_get_connect_error_codes_and_the_connection_closes() {
    let server = Server::start(&[]);
    for (auth, code) in [
        (Some(json!({"token": "garbage"})), "invalid_token"),
        (Some(json!({"token": token("u1", "user", -60)})), "token_expired"),
        (Some(json!({})), "invalid_token"),
        (None, "invalid_token"),
    ] {
        match Client::connect_with(&server.addr, auth.clone(), &[]).await {
            Err(ConnectError::Refused(v)) => {
                assert_eq!(v["data"]["code"], code, "{auth:?}");
                assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            other => panic!("expected CONNECT_ERROR for {auth:?}, got {:?}", other.map(|c| c.sid)),
        }
    }
    // After CONNECT_ERROR the server closes the transport.
    let (mut ws, _) = open_transport(&server.addr, &[]).await.unwrap();
    ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(br#"40{"token":"x"}"#.to_vec())))
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(2), ws.read_frame()).await {
            Ok(Ok(f)) if f.opcode == fastwebsockets::OpCode::Close => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => continue,
            _ => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed);
}

#[tokio::test]
async fn polling_and_other_protocol_versions_get_400_json() {
    let server = Server::start(&[]);
    let r = http(&server.addr, "GET", "/socket.io/?EIO=4&transport=polling", None, None, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "invalid_payload");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("websocket"));
    let r = http(&server.addr, "GET", "/socket.io/?EIO=3&transport=websocket", None, None, &[]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn refused_origins_get_403_before_the_upgrade() {
    let server = Server::start(&[("CHAT_ALLOWED_ORIGINS", "https://school.example,https://app.example")]);
    match open_transport(&server.addr, &[("Origin", "https://evil.example")]).await {
        Err(ConnectError::Http(status, body)) => {
            assert_eq!(status, 403);
            assert!(body.contains("forbidden"));
        }
        _ => panic!("expected 403"),
    }
    assert!(open_transport(&server.addr, &[("Origin", "https://app.example")]).await.is_ok());
    // CORS for REST follows the same list.
    let r = http(&server.addr, "OPTIONS", "/api/chats", None, None, &[("Origin", "https://school.example")]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://school.example"));
    let r = http(&server.addr, "GET", "/api/chats", None, None, &[("Origin", "https://evil.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn the_server_pings_and_closes_a_socket_that_does_not_answer() {
    let server = Server::start(&[("CHAT_PING_INTERVAL_MS", "300"), ("CHAT_PING_TIMEOUT_MS", "300")]);
    let mut alive = Client::connect(&server.addr, &token("u1", "user", 60)).await.unwrap();
    let mut dead = Client::connect(&server.addr, &token("u2", "user", 60)).await.unwrap();
    dead.answer_pings = false;
    let (dead_closed, alive_closed) =
        tokio::join!(dead.closed_within(Duration::from_secs(3)), alive.closed_within(Duration::from_secs(2)));
    assert!(dead_closed, "a silent socket is closed after the ping timeout");
    assert!(!alive_closed, "a socket that answers stays open");
}

#[tokio::test]
async fn malformed_packets_never_take_the_server_down() {
    let server = Server::start(&[]);
    let mut good = Client::connect(&server.addr, &token("u1", "user", 60)).await.unwrap();
    for junk in [
        "",
        "9",
        "4",
        "4x",
        "42[",
        "42{\"a\":1}",
        "4299999999999999999999[]",
        "42[\"join_chat\",{\"chatId\":5}]",
        "45-[]",
        "0{}",
    ] {
        let mut c = Client::connect(&server.addr, &token("u2", "user", 60)).await.unwrap();
        c.send_raw(junk).await;
        let _ = c.closed_within(Duration::from_millis(200)).await;
    }
    // Unknown and malformed events without an ack get an `error` event.
    good.send_raw(r#"42["no_such_event",{}]"#).await;
    let e = good.event("error", Duration::from_secs(2)).await.unwrap();
    assert_eq!(e["code"], "invalid_payload");
    assert_eq!(e["event"], "no_such_event");
    good.send_raw(r#"42["join_chat",{"chatId":5}]"#).await;
    let e = good.event("error", Duration::from_secs(2)).await.unwrap();
    assert_eq!((e["code"].as_str(), e["event"].as_str()), (Some("invalid_payload"), Some("join_chat")));
    // With an ack, the same failure comes back in the ack.
    let ack = good.call("send_message", json!({"chatId": 1})).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "invalid_payload");
    assert_eq!(http(&server.addr, "GET", "/healthz", None, None, &[]).await.status, 200);
}

#[tokio::test]
async fn frames_over_the_limit_close_the_socket_without_harming_others() {
    let server = Server::start(&[("CHAT_MAX_FRAME_BYTES", "1024")]);
    let mut other = Client::connect(&server.addr, &token("u1", "user", 60)).await.unwrap();
    let mut big = Client::connect(&server.addr, &token("u2", "user", 60)).await.unwrap();
    big.send_raw(&format!("42[\"typing_start\",{{\"chatId\":\"{}\"}}]", "x".repeat(4096))).await;
    assert!(big.closed_within(Duration::from_secs(3)).await);
    let ack = other.call("leave_chat", json!({"chatId": "6b0600f7677ef21ca5990c95"})).await;
    assert_eq!(ack["ok"], true);
}

#[tokio::test]
async fn other_namespaces_are_refused_by_name_and_the_root_socket_stays() {
    let server = Server::start(&[]);
    let tok = token("u1", "user", 60);
    let mut c = Client::connect(&server.addr, &tok).await.unwrap();
    c.send_raw(&format!("40/admin,{}", json!({"token": tok}))).await;
    c.send_raw(r#"42/admin,["leave_chat",{"chatId":"x"}]"#).await;
    let ack = c.call("leave_chat", json!({"chatId": "6b0600f7677ef21ca5990c95"})).await;
    assert_eq!(ack["ok"], true, "the root socket is unaffected");
    assert!(!c.closed);
    let refusal = c.other.iter().find(|p| p.starts_with("44/admin,")).expect("CONNECT_ERROR naming /admin");
    let body: serde_json::Value = serde_json::from_str(&refusal["44/admin,".len()..]).unwrap();
    assert_eq!(body["data"]["code"], "invalid_payload");
}
