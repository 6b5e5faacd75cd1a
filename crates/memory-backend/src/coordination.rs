//! [`Lease`] and [`Invalidations`] for one process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jwkstash_core::{
    CacheError, CacheErrorKind, Directory, Invalidation, Invalidations, Lease, LeaseToken,
    MAX_ABOUT_BYTES, from_unix_millis, unix_millis,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::MemoryCache;

/// Leases expire on tokio's clock (so paused-time tests control them); claims are kept in a
/// bounded map.
pub(crate) struct LocalCoordination {
    leases: Mutex<HashMap<String, (LeaseToken, Instant)>>,
    claims: moka::sync::Cache<String, u64>,
    invalidations: broadcast::Sender<Invalidation>,
    directory: moka::sync::Cache<String, String>,
}

impl LocalCoordination {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            leases: Mutex::new(HashMap::new()),
            claims: moka::sync::Cache::new(capacity.max(1024)),
            invalidations: broadcast::channel(64).0,
            directory: moka::sync::Cache::new(capacity.max(1024)),
        }
    }
}

fn slot_key(key: &str, slot: &str) -> String {
    format!("{key}\u{0}{slot}")
}

#[async_trait]
impl<V: Clone + Send + Sync + 'static> Lease for MemoryCache<V> {
    async fn acquire(&self, key: &str, ttl: Duration) -> Result<Option<LeaseToken>, CacheError> {
        let mut leases = self
            .local
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        leases.retain(|_, (_, until)| *until > now);
        if leases.contains_key(key) {
            return Ok(None);
        }
        let token = LeaseToken::random();
        leases.insert(key.to_owned(), (token.clone(), now + ttl));
        Ok(Some(token))
    }

    async fn release(&self, key: &str, token: &LeaseToken) -> Result<(), CacheError> {
        let mut leases = self
            .local
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if leases.get(key).is_some_and(|(held, _)| held == token) {
            leases.remove(key);
        }
        Ok(())
    }

    async fn renew(
        &self,
        key: &str,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut leases = self
            .local
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match leases.get_mut(key) {
            Some((held, until)) if held == token && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn claim_period(
        &self,
        key: &str,
        slot: &str,
        now: SystemTime,
        period: Duration,
    ) -> Result<bool, CacheError> {
        let now = unix_millis(now);
        let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let entry = self
            .local
            .claims
            .entry(slot_key(key, slot))
            .and_compute_with(|last| match last.map(|last| last.into_value()) {
                Some(last) if now < last.saturating_add(period) => moka::ops::compute::Op::Nop,
                _ => moka::ops::compute::Op::Put(now),
            });
        Ok(matches!(
            entry,
            moka::ops::compute::CompResult::Inserted(_)
                | moka::ops::compute::CompResult::ReplacedWith(_)
        ))
    }

    async fn last_claimed(&self, key: &str, slot: &str) -> Result<Option<SystemTime>, CacheError> {
        Ok(self
            .local
            .claims
            .get(&slot_key(key, slot))
            .map(from_unix_millis))
    }
}

#[async_trait]
impl<V: Clone + Send + Sync + 'static> Invalidations for MemoryCache<V> {
    async fn publish(&self, invalidation: Invalidation) -> Result<(), CacheError> {
        // No subscriber is not an error.
        let _ = self.local.invalidations.send(invalidation);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.local.invalidations.subscribe()
    }
}

#[async_trait]
impl<V: Clone + Send + Sync + 'static> Directory for MemoryCache<V> {
    async fn announce(&self, key: &str, about: &str) -> Result<(), CacheError> {
        if about.len() > MAX_ABOUT_BYTES {
            return Err(CacheError::new("memory", CacheErrorKind::Other)
                .with_source("directory document too long"));
        }
        self.local
            .directory
            .insert(key.to_owned(), about.to_owned());
        Ok(())
    }

    async fn announced(&self) -> Result<Vec<(String, String)>, CacheError> {
        Ok(self
            .local
            .directory
            .iter()
            .map(|(key, about)| (key.as_ref().clone(), about))
            .collect())
    }
}
