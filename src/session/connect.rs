//! The Socket.IO CONNECT: the token in its auth payload is verified, the user recorded, and the
//! socket joins the node (hub and bus) before it is told it is connected; a refusal is a
//! CONNECT_ERROR with the contract's code. Only the default namespace `/` is served.

use std::sync::Arc;

use tokio::time::Instant;

use super::transport::End;
use super::{Connected, Flow, Session};
use crate::auth::{AuthError, Identity};
use crate::error::ErrorCode;
use crate::events::{connect_error, connect_error_in, connected};
use crate::hub::SocketHandle;

impl Session {
    pub(super) async fn on_connect(&mut self, namespace: Option<&str>, data: &mut [u8]) -> Flow {
        if namespace.is_some() {
            // Only `/` is served. The refusal names the namespace so that client socket hears
            // back; a socket of `/` on the same connection is unaffected.
            let _ = self.write(&connect_error_in(namespace, ErrorCode::InvalidPayload, "Invalid namespace")).await;
            return Flow::Continue;
        }
        if self.connected.is_some() {
            return Flow::Continue; // `/` is connected already
        }
        #[derive(serde::Deserialize, Default)]
        struct Auth {
            #[serde(default)]
            token: Option<String>,
        }
        let auth: Auth = if data.is_empty() { Auth::default() } else { crate::json::parse(data).unwrap_or_default() };
        let identity = match auth.token.as_deref().map(|t| self.node.verifier.verify(t)) {
            Some(Ok(identity)) => identity,
            Some(Err(e)) => return self.refuse(&e).await,
            None => return self.refuse(&AuthError::Invalid("the CONNECT auth payload has no token".into())).await,
        };
        // Recording the user is best effort: a store outage must not keep anyone from chatting.
        if let Err(e) = self.node.chat.sign_in(&identity.caller).await {
            tracing::warn!(error = %e, user = %identity.caller.user_id, "could not record the user at CONNECT");
        }
        self.accept(identity).await
    }

    async fn refuse(&mut self, e: &AuthError) -> Flow {
        // Socket.IO only knows these two codes at CONNECT; a missing token is an invalid one.
        let code = if e.code() == ErrorCode::TokenExpired { ErrorCode::TokenExpired } else { ErrorCode::InvalidToken };
        self.node.audit.record("socket_refused", None, None, code.as_str(), Some(self.peer));
        metrics::counter!("coursechat_errors_total", "code" => code.as_str()).increment(1);
        let _ = self.write(&connect_error(code, &e.to_string())).await;
        Flow::End(End::ConnectRefused)
    }

    async fn accept(&mut self, identity: Identity) -> Flow {
        let caller = identity.caller;
        let queue = self.node.config.limits.socket_queue;
        // Nothing is written through before the CONNECT ack: the handle starts as if the
        // session were writing, and the ack's write ends that.
        let handle = Arc::new(
            SocketHandle::new(self.socket_id, caller.user_id.clone(), queue).with_stream(self.transport.stream()),
        );
        // Listening starts before the CONNECT ack, so no event after it is missed.
        self.node.connect(&handle).await;
        let expires_at = expiry_instant(identity.exp, self.node.config.jwt_leeway);
        self.connected = Some(Connected { caller: caller.clone(), handle, expires_at });
        self.node.audit.record("socket_connect", Some(&caller.user_id), None, "ok", Some(self.peer));
        if let Flow::End(end) = self.send(&connected(&format!("{:016x}", self.socket_id))).await {
            return Flow::End(end);
        }
        if let Err(e) = self.node.chat.socket_opened(&caller).await {
            tracing::warn!(error = %e, "presence update failed");
        }
        Flow::Continue
    }
}

/// The instant a live socket's token counts as expired: `exp` (seconds since the epoch) plus the
/// clock leeway, the same rule that admitted the token at CONNECT, so a token is never accepted
/// and cut off in the same instant.
pub(super) fn expiry_instant(exp: u64, leeway_secs: u64) -> Instant {
    let now_ms = crate::model::Timestamp::now().millis().max(0) as u64;
    let left = ((exp + leeway_secs) * 1000).saturating_sub(now_ms);
    Instant::now() + std::time::Duration::from_millis(left)
}
