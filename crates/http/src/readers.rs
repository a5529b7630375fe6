//! Store readers for request handlers: a [`tern_store::pool::Pool`] of read-only handles used
//! on blocking threads, so queries never stall the async runtime. Readers run beside the single
//! writer (SQLite WAL).

use std::sync::Arc;

use tern_store::pool::Pool;
use tern_store::{StoreError, StoreRead};

use crate::error::ApiError;

/// Opens a new reader.
pub type OpenReader = dyn Fn() -> Result<Box<dyn StoreRead>, StoreError> + Send + Sync;

/// The readers; cheap to clone.
#[derive(Clone)]
pub struct Readers {
    pool: Pool<Box<dyn StoreRead>>,
}

impl Readers {
    /// Readers opened with `open`.
    pub fn new(open: Arc<OpenReader>) -> Self {
        Readers { pool: Pool::new(open) }
    }

    /// Runs `query` with a reader on a blocking thread.
    pub async fn run<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn StoreRead) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || pool.with(|reader| query(reader.as_ref())))
            .await
            .map_err(|e| ApiError::Internal(format!("reader task failed: {e}")))?
            .map_err(ApiError::from)
    }
}
