//! A session's maildrop: the messages it may see, fixed at login (RFC 1939 section 5: later
//! arrivals wait for the next session), numbered from 1 in the order received, with their
//! exact sizes, their unique ids for UIDL, and the deletion marks DELE sets and RSET clears.
//! Nothing here touches the store; QUIT hands [`Maildrop::marked`] to the spool.

use tern_store::MessageId;

use crate::command::MessageNumber;

/// One message of the maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored message (its id is also the UIDL).
    pub id: MessageId,
    /// Its size as sent ([`crate::wire::size`]).
    pub size: u64,
    /// Marked by DELE.
    pub deleted: bool,
}

/// Why a message number cannot be used; `Display` is the text after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaildropError {
    /// Zero, or past the last message.
    #[error("no such message: {number} (the maildrop has {count})")]
    NoSuchMessage {
        /// The number asked for.
        number: MessageNumber,
        /// Messages in the maildrop.
        count: usize,
    },
    /// Marked as deleted in this session.
    #[error("message {0} is marked as deleted")]
    Deleted(MessageNumber),
}

/// The snapshot taken at login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maildrop {
    entries: Vec<Entry>,
}

impl Maildrop {
    /// A maildrop of these messages, oldest first, none marked.
    pub fn new(messages: impl IntoIterator<Item = (MessageId, u64)>) -> Self {
        let entries =
            messages.into_iter().map(|(id, size)| Entry { id, size, deleted: false }).collect();
        Maildrop { entries }
    }

    /// Messages not marked as deleted and their total size (STAT).
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(n, octets), (_, e)| {
            (n.saturating_add(1), octets.saturating_add(e.size))
        })
    }

    /// The messages not marked as deleted, with their numbers.
    pub fn live(&self) -> impl Iterator<Item = (MessageNumber, &Entry)> {
        (1u64..).zip(&self.entries).filter(|(_, e)| !e.deleted)
    }

    /// The message numbered `number`, unless it does not exist or is marked.
    pub fn get(&self, number: MessageNumber) -> Result<&Entry, MaildropError> {
        let entry = self.entry(number)?;
        if entry.deleted { Err(MaildropError::Deleted(number)) } else { Ok(entry) }
    }

    /// Marks a message as deleted (DELE).
    pub fn delete(&mut self, number: MessageNumber) -> Result<(), MaildropError> {
        self.get(number)?;
        let count = self.entries.len();
        let index = index_of(number, count)?;
        if let Some(entry) = self.entries.get_mut(index) {
            entry.deleted = true;
        }
        Ok(())
    }

    /// Clears every mark (RSET).
    pub fn reset(&mut self) {
        self.entries.iter_mut().for_each(|e| e.deleted = false);
    }

    /// The messages marked as deleted, for QUIT.
    pub fn marked(&self) -> Vec<MessageId> {
        self.entries.iter().filter(|e| e.deleted).map(|e| e.id).collect()
    }

    fn entry(&self, number: MessageNumber) -> Result<&Entry, MaildropError> {
        let index = index_of(number, self.entries.len())?;
        self.entries
            .get(index)
            .ok_or(MaildropError::NoSuchMessage { number, count: self.entries.len() })
    }
}

fn index_of(number: MessageNumber, count: usize) -> Result<usize, MaildropError> {
    number
        .checked_sub(1)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|&i| i < count)
        .ok_or(MaildropError::NoSuchMessage { number, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_of(sizes: &[u64]) -> (Maildrop, Vec<MessageId>) {
        let ids: Vec<MessageId> = sizes.iter().map(|_| MessageId::generate()).collect();
        (Maildrop::new(ids.iter().copied().zip(sizes.iter().copied())), ids)
    }

    #[test]
    fn dele_marks_rset_unmarks_and_numbers_stay() {
        let (mut drop, ids) = drop_of(&[10, 20, 30]);
        assert_eq!(drop.stat(), (3, 60));
        assert_eq!(drop.delete(2), Ok(()));
        assert_eq!(drop.delete(2), Err(MaildropError::Deleted(2)));
        assert_eq!(drop.get(2), Err(MaildropError::Deleted(2)));
        assert_eq!(drop.stat(), (2, 40));
        assert_eq!(drop.get(3).map(|e| e.size), Ok(30), "numbers do not shift");
        assert_eq!(drop.live().map(|(n, _)| n).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(drop.marked(), [ids[1]]);
        drop.reset();
        assert_eq!(drop.stat(), (3, 60));
        assert!(drop.marked().is_empty());
    }

    #[test]
    fn numbers_outside_the_maildrop_are_refused() {
        let (mut drop, _) = drop_of(&[1, 2]);
        for number in [0, 3, u64::MAX] {
            assert_eq!(drop.get(number), Err(MaildropError::NoSuchMessage { number, count: 2 }));
            assert_eq!(drop.delete(number), Err(MaildropError::NoSuchMessage { number, count: 2 }));
        }
        assert_eq!(
            drop.get(0).map_err(|e| e.to_string()),
            Err("no such message: 0 (the maildrop has 2)".to_string())
        );
    }
}
