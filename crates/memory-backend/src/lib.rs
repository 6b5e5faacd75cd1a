//! The in-process jwkstash cache tier: [`MemoryCache`] over [`moka::future::Cache`].
//!
//! Values are stored as they are (for the verifier, `Arc<KeySet>`: parsed keys, never re-parsed
//! on a hit), capacity is bounded, and every entry expires at its
//! [`usable_until`](jwkstash_core::Entry::usable_until) according to the injected clock.
//!
//! ```
//! use jwkstash_memory::MemoryCache;
//! let cache = MemoryCache::<Vec<u8>>::builder().max_capacity(100).build();
//! # let _ = cache;
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jwkstash_core::{Cache, CacheError, Entry, SharedClock, SystemClock};
use moka::Expiry;

mod coordination;
use coordination::LocalCoordination;
use moka::ops::compute::Op;

/// Default number of entries kept (one per key source and issuer).
pub const DEFAULT_MAX_CAPACITY: u64 = 1_000;

/// An in-process, bounded cache tier. Cloning is cheap and clones share the entries.
///
/// It also implements [`Lease`](jwkstash_core::Lease) and
/// [`Invalidations`](jwkstash_core::Invalidations) for one process, so it can stand in for a
/// shared tier among several verifiers of one process.
#[derive(Clone)]
pub struct MemoryCache<V> {
    entries: moka::future::Cache<String, Entry<V>>,
    clock: SharedClock,
    local: Arc<LocalCoordination>,
}

impl<V> fmt::Debug for MemoryCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .field("clock", &self.clock)
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> MemoryCache<V> {
    /// A builder with the defaults: [`DEFAULT_MAX_CAPACITY`] entries, the system clock.
    pub fn builder() -> MemoryCacheBuilder<V> {
        MemoryCacheBuilder::default()
    }

    /// A cache with the defaults.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// The number of entries held (approximate; moka applies writes lazily).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Applies moka's pending evictions and expirations now (they otherwise run lazily).
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }
}

impl<V: Clone + Send + Sync + 'static> Default for MemoryCache<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`MemoryCache`].
#[must_use]
#[derive(Debug, Clone)]
pub struct MemoryCacheBuilder<V> {
    max_capacity: u64,
    clock: SharedClock,
    value: PhantomData<fn() -> V>,
}

impl<V> Default for MemoryCacheBuilder<V> {
    fn default() -> Self {
        Self {
            max_capacity: DEFAULT_MAX_CAPACITY,
            clock: Arc::new(SystemClock),
            value: PhantomData,
        }
    }
}

impl<V: Clone + Send + Sync + 'static> MemoryCacheBuilder<V> {
    /// The most entries kept; the least recently used go first beyond it.
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = entries;
        self
    }

    /// The clock that decides expiry (inject one in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> MemoryCache<V> {
        let entries = moka::future::Cache::builder()
            .max_capacity(self.max_capacity)
            .expire_after(ExpireAtUsableUntil {
                clock: self.clock.clone(),
            })
            .build();
        MemoryCache {
            entries,
            clock: self.clock,
            local: Arc::new(LocalCoordination::new(self.max_capacity)),
        }
    }
}

/// Lets moka reclaim an entry's memory once it is past `usable_until`. Correctness does not
/// depend on it: `get` checks `usable_until` against the injected clock itself.
struct ExpireAtUsableUntil {
    clock: SharedClock,
}

impl ExpireAtUsableUntil {
    fn remaining<V>(&self, entry: &Entry<V>) -> Option<Duration> {
        Some(
            entry
                .usable_until
                .duration_since(self.clock.now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl<V> Expiry<String, Entry<V>> for ExpireAtUsableUntil {
    fn expire_after_create(&self, _: &String, entry: &Entry<V>, _: Instant) -> Option<Duration> {
        self.remaining(entry)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(entry)
    }
}

#[async_trait]
impl<V: Clone + Send + Sync + 'static> Cache<V> for MemoryCache<V> {
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        let Some(entry) = self.entries.get(key).await else {
            return Ok(None);
        };
        if entry.is_usable(self.clock.now()) {
            return Ok(Some(entry));
        }
        self.entries.invalidate(key).await;
        Ok(None)
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| async move {
                match current {
                    Some(current) if current.value().fetched_at > entry.fetched_at => Op::Nop,
                    _ => Op::Put(entry),
                }
            })
            .await;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
