//! Presence and typing as the contract announces them: `user_online` when a user's first socket
//! opens, `user_offline` when the engine's grace period for their last one ends, and
//! `typing_indicator` to the chat's room on each change of state or expiry.

use serde::Serialize;

use crate::auth::Caller;
use crate::engine::Notice;
use crate::events::event_frame;
use crate::hub::{SocketId, Target};
use crate::model::Timestamp;

use super::{ChatResult, ChatService};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TypingIndicator<'a> {
    chat_id: &'a str,
    user_id: &'a str,
    is_typing: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserOnline<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserOffline<'a> {
    user_id: &'a str,
    last_seen: Timestamp,
}

impl ChatService {
    /// `typing_start` / `typing_stop`: announced to the chat's room on a change of state.
    pub async fn typing(&self, caller: &Caller, chat_id: &str, typing: bool, origin: SocketId) -> ChatResult<()> {
        let chat = self.participant_chat_cached(caller, chat_id).await?;
        let changed = if typing {
            self.engine.typing.start(&chat.id, &caller.user_id, origin).await?
        } else {
            self.engine.typing.stop(&chat.id, &caller.user_id).await?
        };
        if changed {
            self.announce_typing(&chat.id, &caller.user_id, typing, origin).await?;
        }
        Ok(())
    }

    pub(super) async fn announce_typing(
        &self,
        chat_id: &str,
        user: &str,
        is_typing: bool,
        origin: SocketId,
    ) -> ChatResult<()> {
        let event = TypingIndicator { chat_id, user_id: user, is_typing };
        self.publish(Target::Room(chat_id.to_owned()), Some(origin), event_frame("typing_indicator", &event)).await
    }

    /// A socket of the caller opened: announce `user_online` when they just came online.
    pub async fn socket_opened(&self, caller: &Caller) -> ChatResult<()> {
        if self.engine.presence.connected(&caller.user_id).await? {
            let partners = self.partners(&caller.user_id).await?;
            if !partners.is_empty() {
                let frame = event_frame("user_online", &UserOnline { user_id: &caller.user_id });
                self.publish(Target::Users(partners), None, frame).await?;
            }
        }
        Ok(())
    }

    pub async fn socket_closed(&self, user: &str) -> ChatResult<()> {
        Ok(self.engine.presence.disconnected(user).await?)
    }

    /// Turns an engine timer's decision into the contract's event.
    pub async fn announce(&self, notice: Notice) -> ChatResult<()> {
        match notice {
            Notice::Offline { user, last_seen } => {
                let partners = self.partners(&user).await?;
                if !partners.is_empty() {
                    let frame = event_frame("user_offline", &UserOffline { user_id: &user, last_seen });
                    self.publish(Target::Users(partners), None, frame).await?;
                }
                Ok(())
            }
            Notice::TypingExpired { chat_id, user, origin } => {
                self.announce_typing(&chat_id, &user, false, origin).await
            }
        }
    }

    /// The users who share a chat with `user`: they see `user_online` / `user_offline`.
    pub(super) async fn partners(&self, user: &str) -> ChatResult<Vec<String>> {
        let mut partners: Vec<String> =
            self.store.chats_by_user(user).await?.iter().map(|c| c.other(user).to_owned()).collect();
        partners.sort();
        partners.dedup();
        Ok(partners)
    }
}
