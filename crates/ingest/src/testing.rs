//! In-memory parts for this crate's tests: a directory of accounts and aliases, and a store
//! that records its batches and can be told to refuse a batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tern_policy::RelayPolicy;
use tern_store::{MessageId, Mutation, NewMessage, Store, StoreError};

use crate::directory::{AuthUser, Directory, DirectoryError, LocalTarget};

/// Accounts and aliases by lookup key; `*@domain` is the domain's catch-all.
#[derive(Default)]
pub struct MemoryDirectory {
    pub targets: HashMap<String, LocalTarget>,
    pub broken: bool,
}

impl MemoryDirectory {
    pub fn account(mut self, address: &str, login: &str) -> Self {
        self.targets.insert(address.into(), LocalTarget::Account { login: login.into() });
        self
    }

    pub fn alias(mut self, address: &str, targets: &[&str]) -> Self {
        let targets = targets.iter().map(|t| t.to_string()).collect();
        self.targets.insert(address.into(), LocalTarget::Alias(targets));
        self
    }
}

impl Directory for MemoryDirectory {
    fn verify(&self, _: &str, _: &str) -> Result<Option<AuthUser>, DirectoryError> {
        Ok(None)
    }
    fn cram_secret(&self, _: &str) -> Result<Option<(String, AuthUser)>, DirectoryError> {
        Ok(None)
    }
    fn cram_md5_enabled(&self) -> bool {
        false
    }
    fn resolve(&self, address: &str) -> Result<LocalTarget, DirectoryError> {
        if self.broken {
            return Err(DirectoryError("disk on fire".into()));
        }
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let found = self.targets.get(address).or_else(|| self.targets.get(&format!("*@{domain}")));
        Ok(found.cloned().unwrap_or(LocalTarget::Unknown))
    }
}

/// The relay policy of a server for `tern.test` and `other.test`.
pub fn policy() -> Arc<RelayPolicy> {
    let mut policy = RelayPolicy::new(false);
    for domain in ["tern.test", "other.test"] {
        policy.add_local_domain(domain).expect("valid domain");
    }
    Arc::new(policy)
}

/// A store that keeps each committed batch's messages and refuses batches `refuse` picks.
pub struct MemoryStore {
    pub batches: Arc<Mutex<Vec<Vec<NewMessage>>>>,
    pub mutations: Arc<Mutex<Vec<Mutation>>>,
    pub refuse: fn(&[NewMessage]) -> bool,
}

impl MemoryStore {
    pub fn new(refuse: fn(&[NewMessage]) -> bool) -> Self {
        MemoryStore { batches: Arc::default(), mutations: Arc::default(), refuse }
    }
}

impl Store for MemoryStore {
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError> {
        if (self.refuse)(batch) {
            return Err(StoreError::Io {
                path: "memory".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.batches.lock().expect("lock").push(batch.to_vec());
        Ok(())
    }
    fn apply(&mut self, mutation: &Mutation) -> Result<Vec<MessageId>, StoreError> {
        self.mutations.lock().expect("lock").push(mutation.clone());
        Ok(vec![])
    }
    // The door never touches the outbound queue's leases.
    fn lease_due(
        &mut self,
        _: &tern_store::Lease,
        _: u64,
        _: &[String],
    ) -> Result<Vec<tern_store::QueueEntry>, StoreError> {
        Ok(vec![])
    }
    fn renew_leases(&mut self, _: &tern_store::Lease, _: &[i64]) -> Result<Vec<i64>, StoreError> {
        Ok(vec![])
    }
    fn release_leases(&mut self, _: &str, _: &[i64]) -> Result<(), StoreError> {
        Ok(())
    }
}
