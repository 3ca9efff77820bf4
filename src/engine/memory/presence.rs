//! Presence and typing state of one node, with their deadlines swept by the engine's timer task.
//!
//! Presence: a user is online while they have a socket. When the last one closes, the user
//! stays online for the grace period; a socket opening within it cancels the offline (no flap).
//! Entries exist only for users with a socket or in their grace period.
//!
//! Typing: one deadline per (chat, user), renewed by each `typing_start`; entries exist only
//! while someone is typing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::engine::{EngineResult, Notice, Presence, Typing};
use crate::hub::SocketId;
use crate::model::time::Timestamp;

struct PresenceEntry {
    sockets: u32,
    /// Set while no socket is open: when the grace period ends, and when the last one closed.
    leaving: Option<(Instant, Timestamp)>,
}

pub struct MemoryPresence {
    users: Mutex<HashMap<String, PresenceEntry>>,
    grace: Duration,
}

impl MemoryPresence {
    pub fn new(grace: Duration) -> Self {
        MemoryPresence { users: Mutex::new(HashMap::new()), grace }
    }

    /// Ends the grace periods that are over.
    pub fn sweep(&self, now: Instant) -> Vec<Notice> {
        let mut gone = Vec::new();
        self.users.lock().retain(|user, entry| match entry.leaving {
            Some((deadline, last_seen)) if entry.sockets == 0 && deadline <= now => {
                gone.push(Notice::Offline { user: user.clone(), last_seen });
                false
            }
            _ => true,
        });
        gone
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn connected(&self, user: &str) -> EngineResult<bool> {
        let mut users = self.users.lock();
        match users.get_mut(user) {
            Some(entry) => {
                entry.sockets += 1;
                entry.leaving = None;
                Ok(false)
            }
            None => {
                users.insert(user.to_owned(), PresenceEntry { sockets: 1, leaving: None });
                Ok(true)
            }
        }
    }

    async fn disconnected(&self, user: &str) -> EngineResult<()> {
        if let Some(entry) = self.users.lock().get_mut(user) {
            entry.sockets = entry.sockets.saturating_sub(1);
            if entry.sockets == 0 {
                entry.leaving = Some((Instant::now() + self.grace, Timestamp::now()));
            }
        }
        Ok(())
    }

    async fn online(&self, users: &[String]) -> EngineResult<Vec<bool>> {
        let map = self.users.lock();
        Ok(users.iter().map(|u| map.contains_key(u)).collect())
    }
}

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
