//! Test support: a real `coursechat` process on an ephemeral port, tokens, a small HTTP client
//! and a Socket.IO client that speaks the wire protocol as `socket.io-client` does (Engine.IO v4
//! over a websocket, Socket.IO v5 packets, acks by id, answering pings).

#![allow(dead_code)]

pub mod stored;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SECRET: &str = "integration-secret";

pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// With `CHAT_TEST_STORE=mongodb`: this server's own database on the test MongoDB, kept
    /// across restarts.
    pub mongodb_url: Option<String>,
    /// With `CHAT_TEST_ENGINE=redis`: the Redis key prefix of this server (or of its cluster),
    /// kept across restarts and deleted when the server is dropped.
    pub redis_prefix: Option<String>,
    pub stdout_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server with its own data dir and these extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::launch(env, test_mongodb_url(), test_redis_prefix())
    }

    /// One node of a cluster: the Redis engine under `redis_prefix` and the MongoDB database
    /// `mongodb_url`, both shared with the other nodes. The prefix's keys are not deleted by the
    /// node (the cluster's [`RedisPrefix`] does that).
    pub fn node(mongodb_url: &str, redis_url: &str, redis_prefix: &str, env: &[(&str, &str)]) -> Server {
        let mut env = env.to_vec();
        env.push(("CHAT_REDIS_URL", redis_url));
        env.push(("CHAT_REDIS_PREFIX", redis_prefix));
        Server::launch(&env, Some(mongodb_url.to_owned()), None)
    }

    fn launch(env: &[(&str, &str)], mongodb_url: Option<String>, redis_prefix: Option<String>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            addr: String::new(),
            data_dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            mongodb_url,
            redis_prefix,
            stdout_lines: Default::default(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coursechat"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("CHAT_JWT_SECRET", SECRET)
            .env("CHAT_DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &self.mongodb_url {
            cmd.env("CHAT_MONGODB_URL", url);
        }
        if let Some(prefix) = &self.redis_prefix {
            cmd.env("CHAT_REDIS_URL", test_redis_url()).env("CHAT_REDIS_PREFIX", prefix);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start coursechat");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            assert!(Instant::now() < deadline, "server did not start in time");
            let line = lines.next().expect("server exited before listening").expect("read stdout");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_owned();
            }
        };
        let sink = self.stdout_lines.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        self.addr = addr;
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same data dir (a new port).
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Some(prefix) = &self.redis_prefix {
            delete_redis_prefix(&test_redis_url(), prefix);
        }
    }
}

/// The Redis of the tests: `CHAT_TEST_REDIS_URL`, default the local one.
pub fn test_redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// With `CHAT_TEST_ENGINE=redis` (which needs `CHAT_TEST_STORE=mongodb`), every test server runs
/// the Redis engine under a key prefix of its own.
fn test_redis_prefix() -> Option<String> {
    if std::env::var("CHAT_TEST_ENGINE").ok().as_deref() != Some("redis") {
        return None;
    }
    Some(new_redis_prefix())
}

fn new_redis_prefix() -> String {
    format!("cctest-{:08x}{:08x}:", rand_u32(), rand_u32())
}

/// Deletes every key under `prefix`.
pub fn delete_redis_prefix(url: &str, prefix: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else { return };
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn).unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}

/// A Redis key prefix for a cluster test, deleted when dropped (after the nodes).
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        RedisPrefix(new_redis_prefix())
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        delete_redis_prefix(&test_redis_url(), &self.0);
    }
}

/// The MongoDB database for one test server, when the suite runs against MongoDB
/// (`CHAT_TEST_STORE=mongodb` with `CHAT_TEST_MONGODB_URL`, as `scripts/test` sets them).
fn test_mongodb_url() -> Option<String> {
    if std::env::var("CHAT_TEST_STORE").ok().as_deref() != Some("mongodb") {
        return None;
    }
    let base = std::env::var("CHAT_TEST_MONGODB_URL").expect("CHAT_TEST_STORE=mongodb needs CHAT_TEST_MONGODB_URL");
    Some(with_db(&base, &format!("coursechat_test_{:08x}{:08x}", rand_u32(), rand_u32())))
}

/// The MongoDB URL `base` with its database replaced by `db`.
pub fn with_db(base: &str, db: &str) -> String {
    coursechat::store::mongo::with_database(base, db)
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An HS256 token for `sub` with `role`, expiring `ttl` seconds from now (negative: expired).
pub fn token(sub: &str, role: &str, ttl: i64) -> String {
    let claims = json!({ "sub": sub, "role": role, "exp": now_secs() + ttl, "name": format!("{sub} name") });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn admin() -> String {
    token("platform-admin", "admin", 3600)
}

/// A unique id prefix for one test's fixtures.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:x}", rand_u32())
}

fn rand_u32() -> u32 {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    n ^ (std::process::id() << 8) ^ COUNTER.fetch_add(7919, std::sync::atomic::Ordering::Relaxed)
}
static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// One HTTP/1.1 request on a fresh connection, with an optional JSON body.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !body.is_empty() {
        all.push(("Content-Type", "application/json"));
    }
    http_raw(addr, method, path, token, body.as_bytes(), &all, false).await
}

/// One request with a raw body (`chunked`: sent with Transfer-Encoding: chunked, no length).
pub async fn http_raw(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
    chunked: bool,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if chunked {
        req.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    if chunked {
        for chunk in body.chunks(4096) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(body);
    }
    // The server may answer (413) and close before it has read everything: ignore write errors.
    let _ = stream.write_all(&out).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    parse_response(raw)
}

fn parse_response(raw: Vec<u8>) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("http head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        payload = dechunk(&payload);
    }
    let body = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    HttpResponse { status, headers, body, raw: payload }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

/// The fixtures of one chat: a course with tutor `t`, student `s` enrolled, and their chat.
pub struct Fixture {
    pub course: String,
    pub tutor: String,
    pub student: String,
    pub chat: String,
}

pub async fn fixture(server: &Server) -> Fixture {
    let course = unique("course");
    let tutor = unique("tutor");
    let student = unique("student");
    let a = admin();
    let addr = &server.addr;
    assert_eq!(
        http(
            addr,
            "PUT",
            &format!("/api/admin/users/{tutor}"),
            Some(&a),
            Some(json!({"name":"Tess Tutor","role":"tutor"})),
            &[]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        http(
            addr,
            "PUT",
            &format!("/api/admin/users/{student}"),
            Some(&a),
            Some(json!({"name":"Sam Student","role":"user"})),
            &[]
        )
        .await
        .status,
        200
    );
    let r = http(
        addr,
        "PUT",
        &format!("/api/admin/courses/{course}"),
        Some(&a),
        Some(json!({"title":"Course","tutorIds":[tutor]})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let r =
        http(addr, "PUT", "/api/admin/enrollments", Some(&a), Some(json!({"userId":student,"courseId":course})), &[])
            .await;
    assert_eq!(r.status, 200);
    let r = http(
        addr,
        "POST",
        "/api/chats",
        Some(&token(&student, "user", 3600)),
        Some(json!({"participantId":tutor,"courseId":course})),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let chat = r.body["chat"]["id"].as_str().unwrap().to_owned();
    Fixture { course, tutor, student, chat }
}

impl Fixture {
    pub fn student_token(&self) -> String {
        token(&self.student, "user", 3600)
    }
    pub fn tutor_token(&self) -> String {
        token(&self.tutor, "tutor", 3600)
    }
}

/// A Socket.IO client over a websocket.
pub struct Client {
    ws: WebSocket<TcpStream>,
    next_ack: u64,
    /// Events received while waiting for something else: (name, payload).
    pub inbox: VecDeque<(String, Value)>,
    /// Acks received while waiting for another ack.
    acks: VecDeque<(u64, Value)>,
    /// Packets that are neither events nor acks (CONNECT_ERROR of a namespace, DISCONNECT...).
    pub other: Vec<String>,
    pub sid: String,
    /// Whether the server sent a Socket.IO DISCONNECT.
    pub server_disconnected: bool,
    pub closed: bool,
    /// Answer Engine.IO pings (a test of ping timeouts turns this off).
    pub answer_pings: bool,
}

#[derive(Debug)]
pub enum ConnectError {
    /// CONNECT_ERROR with its payload.
    Refused(Value),
    /// The HTTP upgrade was answered with this status.
    Http(u16, String),
}

/// Opens a websocket to `/socket.io/` with optional extra headers; returns the socket after the
/// Engine.IO open packet.
pub async fn open_transport(
    addr: &str,
    headers: &[(&str, &str)],
) -> Result<(WebSocket<TcpStream>, Value), ConnectError> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    // Read the response head byte by byte so no websocket bytes are consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != 101 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        return Err(ConnectError::Http(status, String::from_utf8_lossy(&rest).to_string()));
    }
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.read_frame()).await.expect("open packet").unwrap();
    let text = String::from_utf8(frame.payload.to_vec()).unwrap();
    assert!(text.starts_with('0'), "expected the open packet, got {text}");
    Ok((ws, serde_json::from_str(&text[1..]).unwrap()))
}

impl Client {
    pub async fn connect(addr: &str, token: &str) -> Result<Client, ConnectError> {
        Self::connect_with(addr, Some(json!({ "token": token })), &[]).await
    }

    pub async fn connect_with(
        addr: &str,
        auth: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Client, ConnectError> {
        let (ws, _open) = open_transport(addr, headers).await?;
        let mut c = Client {
            ws,
            next_ack: 0,
            inbox: VecDeque::new(),
            acks: VecDeque::new(),
            other: Vec::new(),
            sid: String::new(),
            server_disconnected: false,
            closed: false,
            answer_pings: true,
        };
        let packet = match auth {
            Some(a) => format!("40{a}"),
            None => "40".to_owned(),
        };
        c.send_raw(&packet).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = c.read_text(deadline).await.expect("CONNECT answer");
            if let Some(rest) = text.strip_prefix("40") {
                c.sid = serde_json::from_str::<Value>(rest).unwrap()["sid"].as_str().unwrap().to_owned();
                return Ok(c);
            }
            if let Some(rest) = text.strip_prefix("44") {
                return Err(ConnectError::Refused(serde_json::from_str(rest).unwrap()));
            }
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.write_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec()))).await.expect("write");
    }

    /// The next text frame, handling pings; None when the socket closed or the deadline passed.
    async fn read_text(&mut self, deadline: Instant) -> Option<String> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = match tokio::time::timeout(left, self.ws.read_frame()).await {
                Err(_) => return None,
                Ok(Err(_)) => {
                    self.closed = true;
                    return None;
                }
                Ok(Ok(f)) => f,
            };
            match frame.opcode {
                OpCode::Close => {
                    self.closed = true;
                    return None;
                }
                OpCode::Text => {
                    let text = String::from_utf8(frame.payload.to_vec()).unwrap();
                    if text == "2" {
                        if self.answer_pings {
                            self.send_raw("3").await;
                        }
                        continue;
                    }
                    if text == "41" {
                        self.server_disconnected = true;
                    }
                    return Some(text);
                }
                _ => continue,
            }
        }
    }

    /// Reads one packet into the inbox or ack queue; false when nothing came before the deadline.
    async fn pump(&mut self, deadline: Instant) -> bool {
        let Some(text) = self.read_text(deadline).await else {
            return false;
        };
        if let Some(rest) = text.strip_prefix("42") {
            let v: Value = serde_json::from_str(rest).unwrap();
            self.inbox.push_back((v[0].as_str().unwrap().to_owned(), v[1].clone()));
        } else if let Some(rest) = text.strip_prefix("43") {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let v: Value = serde_json::from_str(&rest[digits.len()..]).unwrap();
            self.acks.push_back((digits.parse().unwrap(), v[0].clone()));
        } else {
            self.other.push(text);
        }
        true
    }

    /// Like [`call`](Self::call), but `None` when the transport closed (or nothing came within
    /// 10 s) instead of failing the test: for clients whose node is killed under them.
    pub async fn try_call(&mut self, event: &str, payload: Value) -> Option<Value> {
        let id = self.next_ack;
        self.next_ack += 1;
        if self.closed {
            return None;
        }
        let frame = format!("42{id}{}", json!([event, payload]));
        if self.ws.write_frame(Frame::text(Payload::Owned(frame.into_bytes()))).await.is_err() {
            self.closed = true;
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pos) = self.acks.iter().position(|(i, _)| *i == id) {
                return Some(self.acks.remove(pos).unwrap().1);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// Emits an event with an ack id and waits for its ack.
    pub async fn call(&mut self, event: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send_raw(&format!("42{id}{}", json!([event, payload]))).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pos) = self.acks.iter().position(|(i, _)| *i == id) {
                return self.acks.remove(pos).unwrap().1;
            }
            assert!(self.pump(deadline).await, "no ack for {event} (closed: {})", self.closed);
        }
    }

    /// Emits an event without an ack.
    pub async fn emit(&mut self, event: &str, payload: Value) {
        self.send_raw(&format!("42{}", json!([event, payload]))).await;
    }

    /// The next event named `name` (others stay in the inbox).
    pub async fn event(&mut self, name: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.inbox.iter().position(|(n, _)| n == name) {
                return Some(self.inbox.remove(pos).unwrap().1);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// Asserts that no `name` event arrives within `wait`.
    pub async fn no_event(&mut self, name: &str, wait: Duration) {
        if let Some(v) = self.event(name, wait).await {
            panic!("unexpected {name}: {v}");
        }
    }

    /// Waits until the server closes the transport; true when it did within `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            if !self.pump(deadline).await && !self.closed {
                return false;
            }
        }
        true
    }

    pub async fn close(mut self) {
        let _ = self.ws.write_frame(Frame::close(1000, b"")).await;
    }
}

pub async fn send(c: &mut Client, chat: &str, cmid: &str, content: &str) -> Value {
    c.call("send_message", json!({"chatId": chat, "clientMsgId": cmid, "content": content})).await
}
