//! Presence on one node, with its deadlines swept by the engine's timer task.
//!
//! A user is online while they have a socket. When the last one closes, the user stays online
//! for the grace period; a socket opening within it cancels the offline (no flap). Entries exist
//! only for users with a socket or in their grace period.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::engine::{EngineResult, Notice, Presence};
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
