//! Shared copies of the messages the scheduler is working on: a message with recipients at
//! many destinations is carried by as many concurrent jobs, and all of them send (and quote in
//! notices) one copy, read from the store once.
//!
//! A copy lives while some job holds a [`BodyRef`] to it and is dropped with the last one, so
//! the cache never holds more than the messages in flight. It owns no queue state: whether a
//! message is due, or what happened to it, is the scheduler's business.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tern_store::{Envelope, MessageId, StoreError, StoredMessage};
use tokio::sync::OnceCell;

/// A message as the scheduler sends it.
#[derive(Debug)]
pub(crate) struct Body {
    /// Its envelope (DSN parameters, arrival time).
    pub(crate) envelope: Envelope,
    /// Its bytes as sent: Tern's `Received:` header, then the client's bytes.
    pub(crate) data: Arc<Vec<u8>>,
}

/// The copy of one message, read at most once; `None` when the message was deleted.
type Slot = OnceCell<Option<Arc<Body>>>;

/// The copies in use, by queue id.
#[derive(Default)]
pub(crate) struct Bodies {
    slots: Mutex<HashMap<MessageId, Weak<Slot>>>,
}

/// One job's hold on a message's copy; the copy goes when the last hold is dropped.
pub(crate) struct BodyRef<'a> {
    id: MessageId,
    slot: Option<Arc<Slot>>,
    bodies: &'a Bodies,
}

impl Bodies {
    /// A hold on `id`'s copy, shared with every other job holding it now.
    pub(crate) fn hold(&self, id: MessageId) -> BodyRef<'_> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match slots.get(&id).and_then(Weak::upgrade) {
            Some(slot) => slot,
            None => {
                let slot = Arc::new(Slot::new());
                slots.insert(id, Arc::downgrade(&slot));
                slot
            }
        };
        BodyRef { id, slot: Some(slot), bodies: self }
    }

    /// Messages with a copy in memory (for tests and metrics).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl BodyRef<'_> {
    /// The message, read by `read` unless another hold has read it already (or is reading
    /// it now: then this waits for that read). `None` when the message is gone.
    pub(crate) async fn load<F, R>(&self, read: F) -> Result<Option<Arc<Body>>, StoreError>
    where
        F: FnOnce() -> R,
        R: Future<Output = Result<Option<StoredMessage>, StoreError>>,
    {
        let Some(slot) = &self.slot else { return Ok(None) };
        let body = slot
            .get_or_try_init(|| async {
                let stored = read().await?;
                Ok::<_, StoreError>(stored.map(|stored| {
                    let data = Arc::new(stored.full_message());
                    Arc::new(Body { envelope: stored.envelope, data })
                }))
            })
            .await?;
        Ok(body.clone())
    }
}

impl Drop for BodyRef<'_> {
    fn drop(&mut self) {
        let mut slots = self.bodies.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // Holds are taken and dropped under the lock, so the count is exact here.
        if let Some(slot) = self.slot.take()
            && Arc::strong_count(&slot) == 1
            && slots.get(&self.id).is_some_and(|weak| weak.ptr_eq(&Arc::downgrade(&slot)))
        {
            slots.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn stored(id: MessageId) -> StoredMessage {
        let message = crate::tests::message();
        StoredMessage {
            id,
            envelope: message.envelope,
            received_header: b"Received: x\r\n".to_vec(),
            raw: message.raw,
            summary: message.summary,
            read: false,
        }
    }

    #[tokio::test]
    async fn holds_share_one_read_and_the_last_one_drops_the_copy() {
        let bodies = Bodies::default();
        let id = MessageId::generate();
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::Relaxed);
            Ok(Some(stored(id)))
        };
        let first = bodies.hold(id);
        let second = bodies.hold(id);
        let a = first.load(read).await.expect("read").expect("present");
        let b = second.load(read).await.expect("read").expect("present");
        assert!(Arc::ptr_eq(&a.data, &b.data), "one copy");
        assert_eq!(reads.load(Ordering::Relaxed), 1, "read once");
        drop(first);
        assert_eq!(bodies.len(), 1, "still held");
        drop(second);
        assert_eq!(bodies.len(), 0, "dropped with the last hold");
        let third = bodies.hold(id);
        third.load(read).await.expect("read");
        assert_eq!(reads.load(Ordering::Relaxed), 2, "read again once nobody held it");
    }
}
