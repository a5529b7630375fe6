//! Message ids: ULIDs, so they sort by arrival time and need no coordination between nodes.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// A message id (also the queue id shown to clients), e.g. `01JD5Z8Q4K6V0Y8T3W2R1N9M7B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(ulid::Ulid);

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

impl MessageId {
    /// A new id, strictly greater than every id this process made before.
    pub fn generate() -> Self {
        let mut guard = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let generator = guard.get_or_insert_with(ulid::Generator::new);
        // The generator only fails when 2^80 ids were made in one millisecond.
        let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
        MessageId(id)
    }

    /// Milliseconds since the Unix epoch encoded in the id.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The text was not a valid message id.
#[derive(Debug, thiserror::Error)]
#[error("invalid message id {0:?}")]
pub struct InvalidMessageId(pub String);

impl FromStr for MessageId {
    type Err = InvalidMessageId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s).map(MessageId).map_err(|_| InvalidMessageId(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_round_trip() {
        let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let text = ids[0].to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<MessageId>().ok(), Some(ids[0]));
        assert!("not-an-id".parse::<MessageId>().is_err());
    }
}
