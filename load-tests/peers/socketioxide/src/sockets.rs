//! Socket.IO: CONNECT with `auth: {token}` (a bad token is refused by the connect middleware),
//! each socket in its user's room `user:<id>` (every device of a user), `join_chat` (plus the
//! chat's room `chat:<id>`), `send_message` with its fan-out to both participants' rooms except
//! the sending socket, `refresh_token`, and the disconnect when a socket's token expires.
//!
//! Generic over the adapter: socketioxide's `LocalAdapter` in memory, `socketioxide-redis`'s
//! adapter in cluster mode (where `s.to(rooms)` reaches the rooms on every node).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value};
use socketioxide::socket::Socket;
use socketioxide::SocketIo;
use socketioxide_core::adapter::DefinedAdapter;

use crate::auth::Caller;
use crate::chat::{Joined, Message};
use crate::cluster::{self, Presence};
use crate::error::ChatError;
use crate::{App, Chats};

/// Sets up the namespace; with a remote adapter the answer is its subscription, to await.
/// (`DefinedAdapter` is socketioxide's bound for that: the caller has to handle `InitRes`.)
pub fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    io.ns("/", on_connect.with(authenticate::<A>))
}

fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// A user is online while its room has a socket (on this node).
pub fn is_online<A: Adapter>(io: &SocketIo<A>, user_id: &str) -> bool {
    !io.within(user_room(user_id)).sockets().is_empty()
}

/// Online anywhere: this node's room first, else every node's (a request through the adapter;
/// a node that does not answer in time counts as having none).
impl<A: Adapter> Presence for SocketIo<A> {
    fn anywhere<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            is_online(self, user_id)
                || self.within(user_room(user_id)).fetch_sockets().await.is_ok_and(|s| !s.is_empty())
        })
    }
}

#[derive(Deserialize)]
struct Auth {
    #[serde(default)]
    token: String,
}

/// Connect middleware: a refusal becomes CONNECT_ERROR `{"message": "<error>"}`.
///
/// Everything a socket needs is set up here, not in the connect handler: socketioxide sends the
/// CONNECT ack and only then spawns the connect handler, so a client that emits at once (as the
/// load generator's students do with `join_chat`) could reach a socket without its event
/// handlers, and its event would be dropped. The middleware runs before the ack is sent.
async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    io: SocketIo<A>,
    State(app): State<App>,
    TryData(auth): TryData<Auth>,
) -> Result<(), ChatError> {
    let token = auth.map(|a| a.token).unwrap_or_default();
    let caller = app.verifier.verify(&token)?;
    app.chats.sign_in(&caller).await?;
    s.join(user_room(&caller.user_id));
    arm_expiry(&s, &io, &caller, app.verifier.leeway);
    s.extensions.insert(Arc::new(caller));
    s.on("join_chat", join_chat::<A>);
    s.on("send_message", send_message::<A>);
    s.on("refresh_token", refresh_token::<A>);
    s.on_disconnect(async |s: SocketRef<A>| {
        s.extensions.remove::<Arc<Expiry>>();
    });
    Ok(())
}

/// Nothing is left to do once connected (see [`authenticate`]).
async fn on_connect() {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinBody {
    chat_id: String,
    #[serde(default)]
    last_seq: Option<u64>,
}

/// What a join answers, in either mode.
#[derive(Serialize)]
#[serde(untagged)]
enum AnyJoined {
    Memory(Joined),
    Redis(Joined<cluster::Json>),
}

async fn join_chat<A: Adapter>(
    s: SocketRef<A>,
    io: SocketIo<A>,
    State(app): State<App>,
    Extension(caller): Extension<Arc<Caller>>,
    reply: Reply<A>,
    TryData(body): TryData<JoinBody>,
) {
    let result = async {
        let body = body.map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        let joined = match &app.chats {
            Chats::Memory(chats) => {
                let online = |id: &str| is_online(&io, id);
                AnyJoined::Memory(chats.join(&caller, &body.chat_id, body.last_seq, &online).await?)
            }
            Chats::Redis(chats) => AnyJoined::Redis(chats.join(&caller, &body.chat_id, body.last_seq, &io).await?),
        };
        s.join(format!("chat:{}", body.chat_id));
        Ok(Okay::new(joined))
    }
    .await;
    reply.answer::<Okay<AnyJoined>>(&s, "join_chat", result);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    chat_id: String,
    client_msg_id: String,
    content: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    attachment_id: Option<String>,
}

/// A message, in either mode: the cluster mode has it as the JSON Redis holds.
#[derive(Serialize)]
#[serde(untagged)]
enum AnyMessage {
    Memory(Arc<Message>),
    Redis(cluster::Json),
}

#[derive(Serialize)]
struct MessageBody {
    message: AnyMessage,
}

async fn send_message<A: Adapter>(
    s: SocketRef<A>,
    State(app): State<App>,
    Extension(caller): Extension<Arc<Caller>>,
    reply: Reply<A>,
    TryData(body): TryData<SendBody>,
) {
    let result = async {
        let body = body.map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        if body.attachment_id.is_some() {
            // This peer has no attachment upload, so no attachment id can be the caller's.
            return Err(ChatError::NotFound("attachment"));
        }
        if body.kind.as_deref().is_some_and(|k| k != "text") {
            return Err(ChatError::InvalidPayload("image and file messages need an attachmentId".into()));
        }
        // One encode for every recipient; `s.to` leaves out the sending socket. A recipient
        // whose queue is full misses it (socketioxide drops the emit for that socket). The
        // chat's lock (`order`) is held until the fan-out is handed over.
        let delivery = match &app.chats {
            Chats::Memory(chats) => {
                let sent = chats.send(&caller, &body.chat_id, body.client_msg_id, body.content).await?;
                let delivery = MessageBody { message: AnyMessage::Memory(sent.message) };
                if sent.fresh {
                    let rooms = [user_room(&sent.chat.student_id), user_room(&sent.chat.tutor_id)];
                    let _ = s.to(rooms).emit("message_received", &delivery).await;
                }
                drop(sent.order);
                delivery
            }
            Chats::Redis(chats) => {
                let sent = chats.send(&caller, &body.chat_id, body.client_msg_id, body.content).await?;
                let delivery = MessageBody { message: AnyMessage::Redis(sent.message) };
                if sent.fresh {
                    let rooms = [user_room(&sent.chat.student_id), user_room(&sent.chat.tutor_id)];
                    let _ = s.to(rooms).emit("message_received", &delivery).await;
                }
                drop(sent.order);
                delivery
            }
        };
        Ok(Okay::new(delivery))
    }
    .await;
    reply.answer(&s, "send_message", result);
}

#[derive(Deserialize)]
struct RefreshBody {
    token: String,
}

#[derive(Serialize)]
struct Refreshed {
    exp: u64,
}

async fn refresh_token<A: Adapter>(
    s: SocketRef<A>,
    io: SocketIo<A>,
    State(app): State<App>,
    Extension(caller): Extension<Arc<Caller>>,
    reply: Reply<A>,
    TryData(body): TryData<RefreshBody>,
) {
    let result = (|| {
        let body = body.map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        let fresh = app.verifier.verify(&body.token)?;
        if fresh.user_id != caller.user_id {
            return Err(ChatError::InvalidToken("the new token names another user".into()));
        }
        let exp = fresh.exp;
        arm_expiry(&s, &io, &fresh, app.verifier.leeway);
        s.extensions.insert(Arc::new(fresh));
        Ok(Okay::new(Refreshed { exp }))
    })();
    reply.answer(&s, "refresh_token", result);
}

/// Aborts the socket's expiry timer when dropped: replaced on refresh, removed on disconnect.
struct Expiry(tokio::task::AbortHandle);

impl Drop for Expiry {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends the session when its token expires (after the clock leeway): an `error` event with code
/// `token_expired`, then a Socket.IO DISCONNECT so the client does not reconnect by itself. The
/// timer holds the socket id, not the socket, so a closed socket is not kept alive by it.
fn arm_expiry<A: Adapter>(s: &SocketRef<A>, io: &SocketIo<A>, caller: &Caller, leeway: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let wait = Duration::from_secs(caller.exp.saturating_add(leeway)).saturating_sub(now);
    let (io, sid) = (io.clone(), s.id);
    let timer = tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if let Some(s) = io.get_socket(sid) {
            let _ = s.emit("error", &ChatError::TokenExpired.body());
            let _ = s.disconnect();
        }
    });
    s.extensions.insert(Arc::new(Expiry(timer.abort_handle())));
}

/// `{ok: true, ...answer}`.
#[derive(Serialize)]
struct Okay<T> {
    ok: bool,
    #[serde(flatten)]
    answer: T,
}

impl<T> Okay<T> {
    fn new(answer: T) -> Self {
        Okay { ok: true, answer }
    }
}

/// How an event is answered: its ack when the client asked for one, else (on failure only) an
/// `error` event, as the contract says. socketioxide's own `AckSender` cannot tell which.
struct Reply<A: Adapter> {
    ack: AckSender<A>,
    wanted: bool,
}

impl<A: Adapter> FromMessageParts<A> for Reply<A> {
    type Error = Infallible;

    fn from_message_parts(s: &Arc<Socket<A>>, v: &mut Value, ack_id: &Option<i64>) -> Result<Self, Infallible> {
        Ok(Reply { ack: AckSender::from_message_parts(s, v, ack_id)?, wanted: ack_id.is_some() })
    }
}

#[derive(Serialize)]
struct Failed {
    ok: bool,
    error: crate::error::ErrorBody,
}

#[derive(Serialize)]
struct ErrorEvent {
    #[serde(flatten)]
    error: crate::error::ErrorBody,
    event: &'static str,
}

impl<A: Adapter> Reply<A> {
    fn answer<T: Serialize>(self, s: &SocketRef<A>, event: &'static str, result: Result<T, ChatError>) {
        // A socket that is gone or whose queue is full cannot be answered; nothing else to do.
        let _ = match (result, self.wanted) {
            (Ok(answer), true) => self.ack.send(&answer),
            (Ok(_), false) => Ok(()),
            (Err(e), true) => self.ack.send(&Failed { ok: false, error: e.body() }),
            (Err(e), false) => s.emit("error", &ErrorEvent { error: e.body(), event }),
        };
    }
}
