//! A per-client map with a hard size bound, for state that outlives connections.
//!
//! Entries know when they stop mattering ([`Expiring::expires_at`]). When a new client would
//! push the map past its capacity, expired entries are dropped first; if that frees nothing,
//! the tenth of entries that expire soonest (the oldest, least active ones) go in one batch, so
//! the O(n) sweep runs at most once per `capacity / 10` insertions even under a flood of new
//! addresses.

use std::collections::HashMap;
use std::time::Instant;

use super::ClientKey;

/// State that becomes irrelevant at a known instant.
pub(super) trait Expiring {
    /// From this instant on the entry is equivalent to having no entry.
    fn expires_at(&self) -> Instant;
}

/// A `HashMap<ClientKey, V>` that never holds more than `capacity` entries.
#[derive(Debug)]
pub(super) struct BoundedMap<V> {
    entries: HashMap<ClientKey, V>,
    capacity: usize,
}

impl<V: Expiring> BoundedMap<V> {
    pub(super) fn new(capacity: usize) -> Self {
        BoundedMap { entries: HashMap::new(), capacity: capacity.max(1) }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The live entry for `key`; an expired one is removed and reported as absent.
    pub(super) fn live_mut(&mut self, key: ClientKey, now: Instant) -> Option<&mut V> {
        if self.entries.get(&key).is_some_and(|entry| entry.expires_at() <= now) {
            self.entries.remove(&key);
        }
        self.entries.get_mut(&key)
    }

    pub(super) fn remove(&mut self, key: ClientKey) {
        self.entries.remove(&key);
    }

    /// Inserts or replaces, evicting others first if a new key would exceed the capacity.
    pub(super) fn insert(&mut self, key: ClientKey, value: V, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        self.entries.insert(key, value);
    }

    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, entry| entry.expires_at() > now);
        if self.entries.len() < self.capacity {
            return;
        }
        let batch = (self.capacity / 10).max(1);
        let mut expiries: Vec<Instant> = self.entries.values().map(Expiring::expires_at).collect();
        let (_, cutoff, _) = expiries.select_nth_unstable(batch - 1);
        let cutoff = *cutoff;
        self.entries.retain(|_, entry| entry.expires_at() > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;

    struct Until(Instant);

    impl Expiring for Until {
        fn expires_at(&self) -> Instant {
            self.0
        }
    }

    fn key(n: u32) -> ClientKey {
        ClientKey::of(IpAddr::V4(Ipv4Addr::from_bits(n)))
    }

    #[test]
    fn never_exceeds_capacity_and_evicts_soonest_expiring() {
        let start = Instant::now();
        let mut map = BoundedMap::new(100);
        for n in 0..1000 {
            // Later keys expire later, so the survivors must be the most recent ones.
            map.insert(key(n), Until(start + Duration::from_secs(u64::from(n) + 1000)), start);
            assert!(map.len() <= 100);
        }
        assert!(map.live_mut(key(999), start).is_some());
        assert!(map.live_mut(key(0), start).is_none());
    }

    #[test]
    fn expired_entries_go_first() {
        let start = Instant::now();
        let mut map = BoundedMap::new(2);
        map.insert(key(1), Until(start + Duration::from_secs(1)), start);
        map.insert(key(2), Until(start + Duration::from_secs(100)), start);
        let later = start + Duration::from_secs(10);
        map.insert(key(3), Until(later + Duration::from_secs(1)), later);
        assert_eq!(map.len(), 2);
        assert!(map.live_mut(key(2), later).is_some());
        assert!(map.live_mut(key(3), later).is_some());
    }

    #[test]
    fn live_mut_drops_expired_entries() {
        let start = Instant::now();
        let mut map = BoundedMap::new(10);
        map.insert(key(1), Until(start + Duration::from_secs(1)), start);
        assert!(map.live_mut(key(1), start).is_some());
        assert!(map.live_mut(key(1), start + Duration::from_secs(1)).is_none());
        assert_eq!(map.len(), 0);
    }
}
