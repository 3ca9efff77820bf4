//! The one read path of a chat's messages, for everything that shows them (history pages,
//! `join_chat {lastSeq}`, the Redis fan-out's gap filling): the log's recent window when it
//! holds the whole window, else the store merged with the log's queue, one copy per seq.
//!
//! The queue is read before the store: the writer releases a message from the queue only after
//! the store has it, so a message it moves from one to the other in between is still seen.

use std::collections::BTreeMap;

use super::{AppendRequest, EngineError, MessageLog, Window};
use crate::model::Message;
use crate::store::{Store, StoreError};

/// The messages of `window`, ascending by seq: at most `limit` of them, the oldest after `after`
/// or the newest before `before`.
pub async fn read<E>(log: &dyn MessageLog, store: &dyn Store, chat_id: &str, window: Window) -> Result<Vec<Message>, E>
where
    E: From<EngineError> + From<StoreError>,
{
    if let Some(recent) = log.recent(chat_id, window).await? {
        return Ok(recent);
    }
    let queued = log.pending(chat_id).await?;
    Ok(match window {
        Window::After { after, limit } => {
            let stored = store.messages_after(chat_id, after, limit).await?;
            let mut all = merge_by_seq(stored, queued.into_iter().filter(|m| m.seq > after));
            all.truncate(limit);
            all
        }
        Window::Before { before, limit } => {
            let stored = store.messages_before(chat_id, before, limit).await?;
            let bound = before.unwrap_or(u64::MAX);
            let mut all = merge_by_seq(stored, queued.into_iter().filter(|m| m.seq < bound));
            all.drain(..all.len().saturating_sub(limit));
            all
        }
    })
}

/// The first message of a resend, once only the store has it: the stored message at `seq` (what
/// the log's idempotency index said the first send got), from the same sender and clientMsgId.
pub async fn stored_first(store: &dyn Store, req: &AppendRequest, seq: u64) -> Result<Message, EngineError> {
    let stored = store.messages_after(&req.chat_id, seq.saturating_sub(1), 1).await?;
    stored
        .into_iter()
        .find(|m| m.seq == seq && m.sender_id == req.sender_id && m.client_msg_id == req.client_msg_id)
        .ok_or_else(|| {
            EngineError::unavailable(format!("the first message of this clientMsgId (seq {seq}) is not stored yet"))
        })
}

/// Stored messages and queued ones, one copy per seq, ascending.
fn merge_by_seq(stored: Vec<Message>, queued: impl IntoIterator<Item = Message>) -> Vec<Message> {
    let mut by_seq: BTreeMap<u64, Message> = stored.into_iter().map(|m| (m.seq, m)).collect();
    for m in queued {
        by_seq.entry(m.seq).or_insert(m);
    }
    by_seq.into_values().collect()
}
