//! Blocks: a user blocks another (who can then not send to them), unblocks, lists their blocks;
//! each change invalidates the cached answer on every node.

use crate::auth::Caller;
use crate::engine::Invalidation;
use crate::model::ids::is_valid_user_id;
use crate::model::{Block, Timestamp};

use super::{ChatError, ChatResult, ChatService};

impl ChatService {
    pub async fn block(&self, caller: &Caller, user_id: &str) -> ChatResult<(Block, bool)> {
        if !is_valid_user_id(user_id) {
            return Err(ChatError::InvalidPayload("userId must be a valid user id".into()));
        }
        if user_id == caller.user_id {
            return Err(ChatError::InvalidPayload("you cannot block yourself".into()));
        }
        let block = self.store.put_block(&caller.user_id, user_id, Timestamp::now()).await?;
        let change = Invalidation::Block { blocker: caller.user_id.clone(), blocked: user_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(block)
    }

    pub async fn unblock(&self, caller: &Caller, user_id: &str) -> ChatResult<()> {
        self.store.delete_block(&caller.user_id, user_id).await?;
        let change = Invalidation::Block { blocker: caller.user_id.clone(), blocked: user_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(())
    }

    pub async fn blocks(&self, caller: &Caller) -> ChatResult<Vec<Block>> {
        Ok(self.store.blocks(&caller.user_id).await?)
    }
}
