//! A small pool of store handles for readers (and the account directory): each caller borrows
//! one connection at a time, so no `Mutex` serializes queries and nothing is reopened per call.

use std::sync::{Arc, Mutex};

use crate::StoreError;

/// Most idle handles kept open.
pub const MAX_IDLE: usize = 8;

/// Opens a new handle.
pub type Open<T> = dyn Fn() -> Result<T, StoreError> + Send + Sync;

/// A pool of `T` handles; cheap to clone. Calls block: run them on blocking threads.
pub struct Pool<T> {
    open: Arc<Open<T>>,
    idle: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool { open: self.open.clone(), idle: self.idle.clone() }
    }
}

impl<T> Pool<T> {
    /// A pool that opens handles with `open`.
    pub fn new(open: Arc<Open<T>>) -> Self {
        Pool { open, idle: Arc::default() }
    }

    /// Runs `f` with a handle, returning it to the pool afterwards.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut handle = match idle {
            Some(handle) => handle,
            None => (self.open)()?,
        };
        let result = f(&mut handle);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(handle);
        }
        result
    }
}
