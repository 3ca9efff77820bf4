//! The in-process engine's directory: the shared cache ([`CachedDirectory`]) reading straight
//! from the store.

use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::directory::{CacheTimes, CachedDirectory, Lookups};
use crate::model::{Chat, Course};
use crate::store::{Store, StoreError};

/// Lookups straight from the store.
pub struct StoreLookups(pub Arc<dyn Store>);

#[async_trait]
impl Lookups for StoreLookups {
    async fn chat(&self, id: &str) -> Result<Option<Chat>, StoreError> {
        self.0.chat(id).await
    }
    async fn course(&self, id: &str) -> Result<Option<Course>, StoreError> {
        self.0.course(id).await
    }
    async fn is_enrolled(&self, user: &str, course: &str) -> Result<bool, StoreError> {
        Ok(self.0.enrollment(user, course).await?.is_some())
    }
    async fn is_blocked(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        self.0.is_blocked(blocker, blocked).await
    }
}

/// The directory of a single node: cached store lookups, invalidated in place.
pub fn directory(store: Arc<dyn Store>) -> CachedDirectory {
    CachedDirectory::new(Arc::new(StoreLookups(store)), CacheTimes::default())
}
