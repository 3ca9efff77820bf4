//! Typing state on one node: one deadline per (chat, user), renewed by each `typing_start` and
//! swept by the engine's timer task; entries exist only while someone is typing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::engine::{EngineResult, Notice, Typing};
use crate::hub::SocketId;

pub struct MemoryTyping {
    typing: Mutex<HashMap<(String, String), (Instant, SocketId)>>,
    ttl: Duration,
}

impl MemoryTyping {
    pub fn new(ttl: Duration) -> Self {
        MemoryTyping { typing: Mutex::new(HashMap::new()), ttl }
    }

    /// Expires the typing states that were not renewed in time.
    pub fn sweep(&self, now: Instant) -> Vec<Notice> {
        let mut expired = Vec::new();
        self.typing.lock().retain(|(chat_id, user), (deadline, origin)| {
            if *deadline <= now {
                expired.push(Notice::TypingExpired { chat_id: chat_id.clone(), user: user.clone(), origin: *origin });
                false
            } else {
                true
            }
        });
        expired
    }
}

#[async_trait]
impl Typing for MemoryTyping {
    async fn start(&self, chat_id: &str, user: &str, origin: SocketId) -> EngineResult<bool> {
        let deadline = Instant::now() + self.ttl;
        let previous = self.typing.lock().insert((chat_id.to_owned(), user.to_owned()), (deadline, origin));
        Ok(previous.is_none())
    }

    async fn stop(&self, chat_id: &str, user: &str) -> EngineResult<bool> {
        Ok(self.typing.lock().remove(&(chat_id.to_owned(), user.to_owned())).is_some())
    }
}
