//! Messages: sending (every check, then the one append), history pages, `join_chat` with what
//! the caller missed, and read cursors. Every read of a chat's messages goes through
//! [`history::read`], the one path that merges the log and the store.

use std::collections::HashMap;

use serde::Serialize;

use crate::auth::Caller;
use crate::engine::{history, AppendRequest, Appended, EngineResult, Window};
use crate::events::event_frame;
use crate::hub::{SocketId, Target};
use crate::model::{Message, MessageType, SenderType, Timestamp};

use super::checks::participants;
use super::content::{check_client_msg_id, check_content};
use super::views::{ChatView, MessagePage};
use super::{ChatError, ChatResult, ChatService};

/// What `join_chat` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub chat: ChatView,
    pub missed: Vec<Message>,
    pub has_more: bool,
}

/// A message to send, as the client gave it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub chat_id: String,
    pub client_msg_id: String,
    pub content: String,
    pub kind: MessageType,
    pub attachment_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageRead<'a> {
    chat_id: &'a str,
    user_id: &'a str,
    seq: u64,
    read_at: Timestamp,
}

impl ChatService {
    /// A page of history: the newest `limit` messages with seq < `before`, ascending.
    pub async fn history(
        &self,
        caller: &Caller,
        chat_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> ChatResult<MessagePage> {
        if limit == 0 || limit > self.limits.max_page {
            return Err(ChatError::InvalidPayload(format!("limit must be 1..{}", self.limits.max_page)));
        }
        let chat = self.participant_chat(caller, chat_id).await?;
        let mut all = self.read(&chat.id, Window::Before { before, limit: limit + 1 }).await?;
        let has_more = all.len() > limit;
        if has_more {
            all.drain(..all.len() - limit);
        }
        let messages = all.into_iter().map(|m| self.present(m)).collect();
        Ok(MessagePage { messages, has_more })
    }

    /// `join_chat`: the checks of a send, then the chat and what the caller missed after
    /// `last_seq`. The session puts the socket into the room.
    pub async fn join(&self, caller: &Caller, chat_id: &str, last_seq: Option<u64>) -> ChatResult<Joined> {
        let chat = self.participant_chat(caller, chat_id).await?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id).await?;
        let (missed, has_more) = match last_seq {
            None => (Vec::new(), false),
            Some(after) => self.messages_after(&chat.id, after, self.limits.max_missed).await?,
        };
        let view = self.view(&caller.user_id, chat, &mut HashMap::new()).await?;
        let missed = missed.into_iter().map(|m| self.present(m)).collect();
        Ok(Joined { chat: view, missed, has_more })
    }

    async fn messages_after(&self, chat_id: &str, after: u64, limit: usize) -> ChatResult<(Vec<Message>, bool)> {
        let mut all = self.read(chat_id, Window::After { after, limit: limit + 1 }).await?;
        let has_more = all.len() > limit;
        all.truncate(limit);
        Ok((all, has_more))
    }

    /// `send_message`: every check, then the one append call. `answer` gets the outcome exactly
    /// once: the message once it is durable (presented, as its recipients see it), or why not.
    /// With the in-process log it runs on the committer thread right after the fan-out, so the
    /// caller does not wait for the append; this returns once the send is queued.
    /// The answer and the presenting share the log's one boxed callback.
    pub async fn send<A>(&self, caller: &Caller, draft: Draft, origin: Option<SocketId>, answer: A)
    where
        A: FnOnce(ChatResult<Message>) + Send + 'static,
    {
        let req = match self.checked_send(caller, draft, origin).await {
            Ok(req) => req,
            Err(e) => return answer(Err(e)),
        };
        let signer = self.signer.clone();
        let done = Box::new(move |appended: EngineResult<Appended>| {
            answer(appended.map_err(ChatError::from).map(|a| {
                let mut message = a.message;
                signer.present(&mut message);
                message
            }))
        });
        self.engine.log.submit(req, done).await
    }

    /// Every check of a send; the append it becomes.
    async fn checked_send(&self, caller: &Caller, draft: Draft, origin: Option<SocketId>) -> ChatResult<AppendRequest> {
        check_client_msg_id(&draft.client_msg_id)?;
        let has_attachment = draft.attachment_id.is_some();
        match (draft.kind, has_attachment) {
            (MessageType::Text, false) | (MessageType::Image | MessageType::File, true) => {}
            (MessageType::Text, true) => {
                return Err(ChatError::InvalidPayload("a message with an attachmentId has type image or file".into()))
            }
            (_, false) => return Err(ChatError::InvalidPayload("image and file messages need an attachmentId".into())),
        }
        check_content(&draft.content, self.limits.max_content_chars, has_attachment)?;
        if let Some(limiter) = &self.engine.message_limiter {
            if let Err(retry) = limiter.check(&caller.user_id).await? {
                return Err(ChatError::RateLimited(retry));
            }
        }
        let chat = self.participant_chat_cached(caller, &draft.chat_id).await?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id).await?;
        let other = chat.other(&caller.user_id);
        if self.engine.directory.is_blocked(other, &caller.user_id).await? {
            return Err(ChatError::Blocked);
        }
        let attachment = match &draft.attachment_id {
            Some(id) => Some(self.own_attachment(caller, &chat, id, draft.kind).await?),
            None => None,
        };
        let sender_type = if caller.user_id == chat.tutor_id { SenderType::Tutor } else { SenderType::User };
        Ok(AppendRequest {
            chat_id: chat.id.clone(),
            sender_id: caller.user_id.clone(),
            sender_type,
            kind: draft.kind,
            content: draft.content,
            attachment,
            client_msg_id: draft.client_msg_id,
            recipients: vec![chat.student_id.clone(), chat.tutor_id.clone()],
            origin,
        })
    }

    async fn read(&self, chat_id: &str, window: Window) -> ChatResult<Vec<Message>> {
        history::read(self.engine.log.as_ref(), self.store.as_ref(), chat_id, window).await
    }

    /// `mark_read` and `PUT /read`: moves the caller's cursor forward (never back, never past the
    /// latest message) and tells every socket of both participants.
    pub async fn mark_read(&self, caller: &Caller, chat_id: &str, seq: Option<u64>) -> ChatResult<()> {
        let chat = self.participant_chat(caller, chat_id).await?;
        let pending = self.queued_since_read(&chat.id).await?;
        let last_seq = pending.last().map_or(0, |m| m.seq).max(chat.last_seq);
        let current = self.effective_read_seq(&chat.id, &caller.user_id, &pending).await?;
        let target = seq.unwrap_or(last_seq).min(last_seq);
        if target <= current {
            return Ok(());
        }
        let now = self.store.advance_read_cursor(&chat.id, &caller.user_id, target).await?;
        let event = MessageRead { chat_id: &chat.id, user_id: &caller.user_id, seq: now, read_at: Timestamp::now() };
        self.publish(Target::Users(participants(&chat)), None, event_frame("message_read", &event)).await
    }
}
