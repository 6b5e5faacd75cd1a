//! The conformance suite that every [`Cache`] backend's tests run, and two small caches for
//! testing code above the cache ([`MapCache`], [`FailingCache`]).
//!
//! Each check is a `pub async fn` over a `dyn Cache<Vec<u8>>` and panics (with a message) when the
//! backend breaks the contract. [`run_all`] runs every check. Timestamps are whole milliseconds
//! so that serialising tiers round-trip them exactly.
//!
//! ```
//! # async fn demo() {
//! use std::sync::Arc;
//! use jwkstash_core::{ManualClock, testkit};
//! let clock = ManualClock::default();
//! let a = Arc::new(testkit::MapCache::new(Arc::new(clock.clone())));
//! let b = Arc::new(testkit::MapCache::new(Arc::new(clock.clone())));
//! testkit::run_all(a, b, &clock).await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    Cache, CacheError, CacheErrorKind, Clock, Entry, ManualClock, SharedClock, SingleFlight,
    get_or_load,
};

/// The cache type the suite runs against.
pub type TestCache = Arc<dyn Cache<Vec<u8>>>;

const SECOND: Duration = Duration::from_secs(1);

/// A fresh entry fetched now, fresh for 10 minutes, usable for an hour more.
pub fn entry_now(clock: &dyn Clock, value: &[u8]) -> Entry<Vec<u8>> {
    let now = clock.now();
    Entry::new(value.to_vec(), now, now + 600 * SECOND, now + 4200 * SECOND)
        .with_etag(Some("\"v1\""))
}

/// Runs every check. `cache` and `other` must be two handles on the same backend with different
/// key prefixes (or namespaces), both reading `clock`.
pub async fn run_all(cache: TestCache, other: TestCache, clock: &ManualClock) {
    missing_key(&cache).await;
    put_then_get(&cache, clock).await;
    overwrite(&cache, clock).await;
    older_write_is_ignored(&cache, clock).await;
    remove(&cache, clock).await;
    expiry(&cache, clock).await;
    stale_entries_are_served(&cache, clock).await;
    isolation(&cache, &other, clock).await;
    large_value(&cache, clock).await;
    concurrent_single_flight(&cache, clock).await;
}

/// A key never written reads as `None`.
pub async fn missing_key(cache: &TestCache) {
    assert!(cache.get("conformance:missing").await.unwrap().is_none());
}

/// What is put is read back with the same value and times.
pub async fn put_then_get(cache: &TestCache, clock: &ManualClock) {
    let entry = entry_now(clock, b"hello");
    cache.put("conformance:put", entry.clone()).await.unwrap();
    let read = cache.get("conformance:put").await.unwrap();
    assert_eq!(read, Some(entry), "{} returned another entry", cache.name());
}

/// A later write replaces an earlier one.
pub async fn overwrite(cache: &TestCache, clock: &ManualClock) {
    cache
        .put("conformance:overwrite", entry_now(clock, b"first"))
        .await
        .unwrap();
    clock.advance(SECOND);
    let newer = entry_now(clock, b"second");
    cache
        .put("conformance:overwrite", newer.clone())
        .await
        .unwrap();
    assert_eq!(
        cache.get("conformance:overwrite").await.unwrap(),
        Some(newer)
    );
}

/// A write of an entry fetched earlier than the stored one leaves the stored one.
pub async fn older_write_is_ignored(cache: &TestCache, clock: &ManualClock) {
    let older = entry_now(clock, b"older");
    clock.advance(SECOND);
    let newer = entry_now(clock, b"newer");
    cache.put("conformance:order", newer.clone()).await.unwrap();
    cache.put("conformance:order", older).await.unwrap();
    assert_eq!(
        cache.get("conformance:order").await.unwrap(),
        Some(newer),
        "{} let an older write roll a newer entry back",
        cache.name()
    );
}

/// A removed key reads as `None`; removing it again succeeds.
pub async fn remove(cache: &TestCache, clock: &ManualClock) {
    cache
        .put("conformance:remove", entry_now(clock, b"x"))
        .await
        .unwrap();
    cache.remove("conformance:remove").await.unwrap();
    assert!(cache.get("conformance:remove").await.unwrap().is_none());
    cache.remove("conformance:remove").await.unwrap();
}

/// An entry is never returned at or past its `usable_until`.
pub async fn expiry(cache: &TestCache, clock: &ManualClock) {
    let now = clock.now();
    let entry = Entry::new(b"short".to_vec(), now, now + SECOND, now + 2 * SECOND);
    cache.put("conformance:expiry", entry).await.unwrap();
    assert!(cache.get("conformance:expiry").await.unwrap().is_some());
    clock.advance(2 * SECOND);
    assert!(
        cache.get("conformance:expiry").await.unwrap().is_none(),
        "{} returned an entry past usable_until",
        cache.name()
    );
}

/// An entry past `fresh_until` but before `usable_until` is still returned (staleness is policy).
pub async fn stale_entries_are_served(cache: &TestCache, clock: &ManualClock) {
    let now = clock.now();
    let entry = Entry::new(b"stale".to_vec(), now, now + SECOND, now + 100 * SECOND);
    cache.put("conformance:stale", entry.clone()).await.unwrap();
    clock.advance(10 * SECOND);
    assert_eq!(cache.get("conformance:stale").await.unwrap(), Some(entry));
}

/// Two caches with different prefixes do not see each other's entries.
pub async fn isolation(cache: &TestCache, other: &TestCache, clock: &ManualClock) {
    cache
        .put("conformance:isolated", entry_now(clock, b"mine"))
        .await
        .unwrap();
    assert!(
        other.get("conformance:isolated").await.unwrap().is_none(),
        "{} leaked an entry across prefixes",
        cache.name()
    );
    other.remove("conformance:isolated").await.unwrap();
    assert!(cache.get("conformance:isolated").await.unwrap().is_some());
}

/// A 256 KiB value (the default JWKS body limit) round-trips byte for byte.
pub async fn large_value(cache: &TestCache, clock: &ManualClock) {
    let value: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let entry = entry_now(clock, &value);
    cache.put("conformance:large", entry.clone()).await.unwrap();
    assert_eq!(cache.get("conformance:large").await.unwrap(), Some(entry));
}

/// 64 concurrent cold reads through [`get_or_load`] run one load and all see its value.
pub async fn concurrent_single_flight(cache: &TestCache, clock: &ManualClock) {
    let flights = Arc::new(SingleFlight::new());
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (cache, flights, loads) = (Arc::clone(cache), Arc::clone(&flights), Arc::clone(&loads));
        let entry = entry_now(clock, b"loaded once");
        tasks.push(tokio::spawn(async move {
            get_or_load(&cache, &flights, "conformance:flight", || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::convert::Infallible>(entry)
            })
            .await
        }));
    }
    for task in tasks {
        let entry = task.await.unwrap().unwrap().unwrap();
        assert_eq!(entry.value, b"loaded once");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "concurrent misses loaded more than once"
    );
    assert!(cache.get("conformance:flight").await.unwrap().is_some());
}

/// The simplest correct cache: a mutex around a map. A reference for the suite and a stand-in
/// tier for tests of code above the cache.
#[derive(Debug)]
pub struct MapCache<V> {
    entries: Mutex<HashMap<String, Entry<V>>>,
    clock: SharedClock,
}

impl<V> MapCache<V> {
    /// An empty cache reading `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }
}

#[async_trait]
impl<V: Clone + Send + Sync + std::fmt::Debug + 'static> Cache<V> for MapCache<V> {
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap();
        Ok(entries.get(key).filter(|e| e.is_usable(now)).cloned())
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        let mut entries = self.entries.lock().unwrap();
        if entries
            .get(key)
            .is_none_or(|current| current.fetched_at <= entry.fetched_at)
        {
            entries.insert(key.to_owned(), entry);
        }
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "map"
    }
}

/// A cache whose every call fails with [`CacheErrorKind::Unavailable`], counting the calls.
#[derive(Debug, Default)]
pub struct FailingCache {
    calls: AtomicUsize,
}

impl FailingCache {
    /// How many calls were made.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn fail(&self) -> CacheError {
        self.calls.fetch_add(1, Ordering::SeqCst);
        CacheError::new("failing", CacheErrorKind::Unavailable)
    }
}

#[async_trait]
impl<V: Send + 'static> Cache<V> for FailingCache {
    async fn get(&self, _key: &str) -> Result<Option<Entry<V>>, CacheError> {
        Err(self.fail())
    }

    async fn put(&self, _key: &str, _entry: Entry<V>) -> Result<(), CacheError> {
        Err(self.fail())
    }

    async fn remove(&self, _key: &str) -> Result<(), CacheError> {
        Err(self.fail())
    }

    fn name(&self) -> &'static str {
        "failing"
    }
}
