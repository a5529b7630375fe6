//! A small pool of read-only store handles, used on blocking threads so queries never stall
//! the async runtime. Readers run beside the single writer (SQLite WAL).

use std::sync::{Arc, Mutex};

use tern_store::{StoreError, StoreRead};

use crate::error::ApiError;

/// Opens a new reader.
pub type OpenReader = dyn Fn() -> Result<Box<dyn StoreRead>, StoreError> + Send + Sync;

/// Most idle readers kept open.
const MAX_IDLE_READERS: usize = 8;

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct Readers {
    open: Arc<OpenReader>,
    idle: Arc<Mutex<Vec<Box<dyn StoreRead>>>>,
}

impl Readers {
    /// A pool that opens readers with `open`.
    pub fn new(open: Arc<OpenReader>) -> Self {
        Readers { open, idle: Arc::default() }
    }

    /// Runs `query` with a reader on a blocking thread.
    pub async fn run<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn StoreRead) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = pool.take()?;
            let result = query(reader.as_ref());
            pool.give_back(reader);
            result.map_err(ApiError::from)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("reader task failed: {e}")))?
    }

    fn take(&self) -> Result<Box<dyn StoreRead>, ApiError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(reader) => Ok(reader),
            None => (self.open)().map_err(ApiError::from),
        }
    }

    fn give_back(&self, reader: Box<dyn StoreRead>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
    }
}
