//! The bus of a single node: every socket is local, so publishing is handing the event to the hub,
//! and there is nothing to subscribe to.

use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::{Bus, EngineResult, Topic};
use crate::hub::{Delivery, Hub};

pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        LocalBus { hub }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, delivery: Delivery) -> EngineResult<()> {
        self.hub.deliver(&delivery);
        Ok(())
    }

    async fn subscribe(&self, _topic: &Topic) -> EngineResult<()> {
        Ok(())
    }

    async fn unsubscribe(&self, _topic: &Topic) {}

    /// Nothing is lost between this node and its own hub.
    fn track(&self, _user: &str, _chat_id: &str, _seq: u64) {}
}
