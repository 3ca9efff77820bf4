//! From a client's event to the node and the chat rules, and back as an ack: each event is
//! decoded ([`crate::events`]), handed to the [`Node`](crate::node::Node) (joining and leaving
//! rooms) or to the chat rules (sending, typing, reading), and answered with `{ok: true, ...}` or
//! the contract's error, as an ack when the client asked for one and as an `error` event
//! otherwise. A send is answered by whoever has its outcome (the in-process log's committer
//! thread), through the socket's hub handle, while the session goes on reading.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::connect::expiry_instant;
use super::Session;
use crate::chat::ChatError;
use crate::chat::{ChatResult, Draft};
use crate::error::{ErrorBody, ErrorCode};
use crate::events::{ack_err, ack_ok, decode_client_event, error_event, ClientEvent};
use crate::hub::SocketHandle;
use crate::model::Message;

/// What a successful event answers in its ack: a JSON object, encoded once.
enum Reply {
    Ok,
    Json(Vec<u8>),
    /// The answer goes to the socket on its own, once the engine has it (a send's ack).
    Deferred,
}

impl Reply {
    fn json<T: Serialize>(body: &T) -> Result<Reply, ChatError> {
        let value = serde_json::to_vec(body).map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        Ok(Reply::Json(value))
    }

    fn into_ack(self, id: u64) -> Option<Bytes> {
        match self {
            Reply::Ok => Some(ack_ok(id, b"{}")),
            Reply::Json(body) => Some(ack_ok(id, &body)),
            Reply::Deferred => None,
        }
    }
}

/// The frame that tells the client an event failed: its ack when it asked for one, an `error`
/// event otherwise.
fn error_frame(ack_id: Option<u64>, body: &ErrorBody, event: Option<&str>) -> Bytes {
    metrics::counter!("coursechat_errors_total", "code" => body.code.as_str()).increment(1);
    match ack_id {
        Some(id) => ack_err(id, body),
        None => error_event(body, event),
    }
}

/// A send's answer: its ack (or error) written to the sending socket by whoever has the
/// outcome, through the hub's handle, so it is ordered with the socket's other frames.
fn send_answer(
    socket: Arc<SocketHandle>,
    ack_id: Option<u64>,
    started: Instant,
) -> impl FnOnce(ChatResult<Message>) + Send + 'static {
    move |sent: ChatResult<Message>| {
        let frame = match sent.and_then(|message| {
            #[derive(Serialize)]
            struct Sent<'a> {
                message: &'a Message,
            }
            Reply::json(&Sent { message: &message })
        }) {
            Ok(reply) => {
                metrics::histogram!("coursechat_send_ack_seconds").record(started.elapsed().as_secs_f64());
                match ack_id.and_then(|id| reply.into_ack(id)) {
                    Some(ack) => ack,
                    None => return,
                }
            }
            Err(e) => error_frame(ack_id, &e.body(), Some("send_message")),
        };
        socket.send(frame);
    }
}

impl Session {
    pub(super) async fn on_event(&mut self, ack_id: Option<u64>, data: &mut [u8]) {
        let event = match decode_client_event(data) {
            Ok(e) => e,
            Err(e) => {
                let body = ErrorBody::new(ErrorCode::InvalidPayload, e.message);
                self.reply_error(ack_id, &body, e.event.as_deref()).await;
                return;
            }
        };
        let name = event.name();
        metrics::counter!("coursechat_events_in_total", "event" => name).increment(1);
        match self.dispatch(event, ack_id).await {
            Ok(reply) => {
                if let Some(ack) = ack_id.and_then(|id| reply.into_ack(id)) {
                    let _ = self.write(&ack).await;
                }
            }
            Err(e) => {
                let body = e.body();
                self.reply_error(ack_id, &body, Some(name)).await;
            }
        }
    }

    pub(super) async fn reply_error(&mut self, ack_id: Option<u64>, body: &ErrorBody, event: Option<&str>) {
        let _ = self.write(&error_frame(ack_id, body, event)).await;
    }

    async fn dispatch(&mut self, event: ClientEvent, ack_id: Option<u64>) -> Result<Reply, ChatError> {
        let node = self.node.clone();
        let Some(c) = self.connected.as_mut() else {
            return Err(ChatError::Forbidden("not connected".into()));
        };
        match event {
            ClientEvent::JoinChat(j) => {
                let joined = node.join(&c.handle, &c.caller, &j.chat_id, j.last_seq).await;
                let (target, result) = match &joined {
                    Ok(joined) => (joined.chat.id.as_str(), "ok"),
                    Err(e) => (j.chat_id.as_str(), e.code().as_str()),
                };
                node.audit.record("join_chat", Some(&c.caller.user_id), Some(target), result, Some(self.peer));
                Reply::json(&joined?)
            }
            ClientEvent::LeaveChat(l) => {
                node.leave(&c.handle, &l.chat_id).await;
                Ok(Reply::Ok)
            }
            ClientEvent::SendMessage(s) => {
                let draft = Draft {
                    chat_id: s.chat_id,
                    client_msg_id: s.client_msg_id,
                    content: s.content,
                    kind: s.kind,
                    attachment_id: s.attachment_id,
                };
                let answer = send_answer(c.handle.clone(), ack_id, Instant::now());
                node.chat.send(&c.caller, draft, Some(c.handle.id), answer).await;
                Ok(Reply::Deferred)
            }
            ClientEvent::TypingStart(t) => {
                node.allow_typing(&c.handle).await?;
                node.chat.typing(&c.caller, &t.chat_id, true, c.handle.id).await?;
                Ok(Reply::Ok)
            }
            ClientEvent::TypingStop(t) => {
                node.allow_typing(&c.handle).await?;
                node.chat.typing(&c.caller, &t.chat_id, false, c.handle.id).await?;
                Ok(Reply::Ok)
            }
            ClientEvent::MarkRead(m) => {
                node.chat.mark_read(&c.caller, &m.chat_id, m.seq).await?;
                Ok(Reply::Ok)
            }
            ClientEvent::RefreshToken(r) => {
                let identity = node.verifier.verify(&r.token)?;
                if identity.caller.user_id != c.caller.user_id {
                    return Err(ChatError::Forbidden("the new token names another user".into()));
                }
                c.expires_at = expiry_instant(identity.exp, node.config.jwt_leeway);
                c.caller.role = identity.caller.role;
                #[derive(Serialize)]
                struct Refreshed {
                    exp: u64,
                }
                Reply::json(&Refreshed { exp: identity.exp })
            }
        }
    }
}
