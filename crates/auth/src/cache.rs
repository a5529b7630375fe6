//! The answers mail-auth keeps between messages: parsed TXT records (SPF, DKIM keys, DMARC),
//! MX, A, AAAA and PTR answers, each until the expiry its DNS answer gave (negative answers
//! too, capped by mail-auth). Bounded: a full map first drops what expired, then everything,
//! so a flood of names never grows memory without limit.
//!
//! [`StaticRecords`] are TXT records from the configuration (`auth.records`), answered before
//! the cache and DNS: a catcher in CI verifies DKIM with a key it was given.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::dkim::DomainKey;
use mail_auth::dmarc::DmarcRecord;
use mail_auth::dns::{Mx, Negative, RecordSet, TxtRecordParser};
use mail_auth::spf::SpfRecord;
use mail_auth::{DnsCache, ResolverCache, TxtRecord};

use crate::config::ConfigError;

/// Default most entries per record type.
pub const DEFAULT_CACHE_ENTRIES: usize = 20_000;

/// One record type's answers, each with its expiry.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        TtlCache { entries: Mutex::new(HashMap::new()), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.lock();
        let (value, until) = entries.get(name)?;
        (*until > Instant::now()).then(|| value.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

type Answer<T> = Result<RecordSet<T>, Negative>;

/// TXT records given in the configuration, by fully qualified lower-case name.
#[derive(Clone, Default)]
pub struct StaticRecords(HashMap<Box<str>, TxtRecord>);

impl StaticRecords {
    /// Parses `auth.records`: a name under `_domainkey` holds a DKIM key, one under `_dmarc` a
    /// DMARC record, any other an SPF record; an empty value says the name has no record
    /// (as `NXDOMAIN` would), so a test can answer every name the checks ask without DNS.
    pub fn parse(records: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut parsed = HashMap::new();
        for (name, value) in records {
            let fqdn = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase());
            let bytes = value.as_bytes();
            let record: Result<TxtRecord, mail_auth::Error> = if value.trim().is_empty() {
                Ok(TxtRecord::Error(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
                    mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
                ))))
            } else if fqdn.contains("._domainkey.") {
                DomainKey::parse(bytes).map(TxtRecord::from)
            } else if fqdn.starts_with("_dmarc.") {
                DmarcRecord::parse(bytes).map(TxtRecord::from)
            } else {
                SpfRecord::parse(bytes).map(TxtRecord::from)
            };
            let record = record.map_err(|e| ConfigError::Invalid {
                key: format!("auth.records.{name:?}"),
                reason: format!("not a valid record for its name: {e}"),
            })?;
            parsed.insert(fqdn.into_boxed_str(), record);
        }
        Ok(StaticRecords(parsed))
    }
}

/// The TXT cache, with the configured records in front.
pub struct TxtCache {
    fixed: StaticRecords,
    cache: TtlCache<Box<str>, TxtRecord>,
}

impl ResolverCache<Box<str>, TxtRecord> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.fixed.0.get(name).cloned().or_else(|| self.cache.get(name))
    }

    fn remove<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.remove(name)
    }

    fn insert(&self, key: Box<str>, value: TxtRecord, valid_until: Instant) {
        self.cache.insert(key, value, valid_until);
    }
}

/// Every cache mail-auth uses, shared by all sessions.
pub struct Caches {
    txt: TxtCache,
    mx: TtlCache<Box<str>, Answer<Mx>>,
    ipv4: TtlCache<Box<str>, Answer<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, Answer<Ipv6Addr>>,
    ptr: TtlCache<IpAddr, Answer<Box<str>>>,
}

impl Caches {
    /// Empty caches of `capacity` entries per type, with `fixed` in front of the TXT one.
    pub fn new(fixed: StaticRecords, capacity: usize) -> Self {
        Caches {
            txt: TxtCache { fixed, cache: TtlCache::new(capacity) },
            mx: TtlCache::new(capacity),
            ipv4: TtlCache::new(capacity),
            ipv6: TtlCache::new(capacity),
            ptr: TtlCache::new(capacity),
        }
    }
}

impl DnsCache for Caches {
    type Txt = TxtCache;
    type Mx = TtlCache<Box<str>, Answer<Mx>>;
    type Ipv4 = TtlCache<Box<str>, Answer<Ipv4Addr>>;
    type Ipv6 = TtlCache<Box<str>, Answer<Ipv6Addr>>;
    type Ptr = TtlCache<IpAddr, Answer<Box<str>>>;

    fn txt(&self) -> Option<&Self::Txt> {
        Some(&self.txt)
    }
    fn mx(&self) -> Option<&Self::Mx> {
        Some(&self.mx)
    }
    fn ipv4(&self) -> Option<&Self::Ipv4> {
        Some(&self.ipv4)
    }
    fn ipv6(&self) -> Option<&Self::Ipv6> {
        Some(&self.ipv6)
    }
    fn ptr(&self) -> Option<&Self::Ptr> {
        Some(&self.ptr)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_expire_and_a_full_cache_drops_the_expired_first() {
        let cache: TtlCache<&str, u32> = TtlCache::new(2);
        let now = Instant::now();
        cache.insert("old", 1, now);
        cache.insert("live", 2, now + Duration::from_secs(60));
        assert_eq!(cache.get("old"), None, "expired");
        assert_eq!(cache.get("live"), Some(2));
        cache.insert("new", 3, now + Duration::from_secs(60));
        assert_eq!((cache.get("live"), cache.get("new")), (Some(2), Some(3)));
        assert_eq!(cache.lock().len(), 2, "bounded");
    }

    #[test]
    fn configured_records_must_parse_as_what_their_name_says() {
        let record = |name: &str, value: &str| {
            StaticRecords::parse(&BTreeMap::from([(name.to_string(), value.to_string())]))
        };
        assert!(
            record(
                "sel._domainkey.Example.com",
                "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
            )
            .is_ok()
        );
        assert!(record("_dmarc.example.com", "v=DMARC1; p=reject").is_ok());
        assert!(record("example.com", "v=spf1 -all").is_ok());
        let bad = record("sel._domainkey.example.com", "v=DKIM1; p=@@not base64@@");
        let Err(e) = bad else { panic!("accepted") };
        assert!(e.to_string().starts_with("auth.records.\"sel._domainkey.example.com\""), "{e}");
    }
}
