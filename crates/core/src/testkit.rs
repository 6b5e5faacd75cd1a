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
    // The load is held open until every caller is seen waiting on it: no timing involved.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (cache, flights, loads) = (Arc::clone(cache), Arc::clone(&flights), Arc::clone(&loads));
        let gate = Arc::clone(&gate);
        let entry = entry_now(clock, b"loaded once");
        tasks.push(tokio::spawn(async move {
            get_or_load(&cache, &flights, "conformance:flight", || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                let _open = gate.acquire().await;
                Ok::<_, std::convert::Infallible>(entry)
            })
            .await
        }));
    }
    let key = "conformance:flight".to_owned();
    let all_joined = tokio::time::timeout(5 * SECOND, async {
        while flights.waiting(&key) < 64 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(all_joined.is_ok(), "the callers never all joined one load");
    gate.add_permits(1);
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

/// A key of its own for each run, so that suites can share one server.
fn unique(name: &str) -> String {
    format!("{name}-{:016x}", fastrand::u64(..))
}

/// The [`Lease`](crate::Lease) contract, on two handles `a` and `b` to one shared tier (two
/// instances of a fleet): exclusive, released only with the holder's token, ended by its TTL
/// (measured by the tier, so this takes about 300 ms of real time on a remote tier), and
/// claims that follow the caller's clock.
pub async fn run_lease_suite(a: &dyn crate::Lease, b: &dyn crate::Lease, clock: &ManualClock) {
    lease_is_exclusive_and_released_by_its_holder(a, b).await;
    lease_ends_by_itself(a, b).await;
    lease_is_renewed_by_its_holder_only(a, b).await;
    claims_once_per_period(a, b, clock).await;
    claims_are_per_key_and_slot(a, b, clock).await;
}

/// One holder at a time; a stranger's token releases nothing; the holder's does.
pub async fn lease_is_exclusive_and_released_by_its_holder(
    a: &dyn crate::Lease,
    b: &dyn crate::Lease,
) {
    let key = unique("lease");
    let token = a
        .acquire(&key, 5 * SECOND)
        .await
        .unwrap()
        .expect("a free lease");
    assert!(
        b.acquire(&key, 5 * SECOND).await.unwrap().is_none(),
        "two holders"
    );
    assert!(
        a.acquire(&key, 5 * SECOND).await.unwrap().is_none(),
        "taken twice"
    );
    b.release(&key, &crate::LeaseToken::random()).await.unwrap();
    assert!(
        b.acquire(&key, 5 * SECOND).await.unwrap().is_none(),
        "a stranger's token released the lease"
    );
    a.release(&key, &token).await.unwrap();
    let token = b.acquire(&key, 5 * SECOND).await.unwrap();
    assert!(
        token.is_some(),
        "the holder's release did not free the lease"
    );
}

/// A holder that never releases: the lease ends after its TTL, not before.
pub async fn lease_ends_by_itself(a: &dyn crate::Lease, b: &dyn crate::Lease) {
    let key = unique("lease-ttl");
    let ttl = Duration::from_millis(300);
    assert!(a.acquire(&key, ttl).await.unwrap().is_some());
    assert!(
        b.acquire(&key, 5 * SECOND).await.unwrap().is_none(),
        "ended at once"
    );
    let freed = tokio::time::timeout(5 * SECOND, async {
        while b.acquire(&key, 5 * SECOND).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "a lease outlived its TTL by seconds");
}

/// A holder's renewal keeps the lease past its first TTL; a stranger's token renews nothing,
/// and neither does the holder's once the lease has ended.
pub async fn lease_is_renewed_by_its_holder_only(a: &dyn crate::Lease, b: &dyn crate::Lease) {
    let key = unique("lease-renew");
    let ttl = Duration::from_millis(200);
    let token = a.acquire(&key, ttl).await.unwrap().expect("a free lease");
    let stranger = crate::LeaseToken::random();
    assert!(
        !b.renew(&key, &stranger, 5 * SECOND).await.unwrap(),
        "a stranger's token renewed the lease"
    );
    assert!(
        a.renew(&key, &token, 5 * SECOND).await.unwrap(),
        "the holder could not renew"
    );
    // Past the first TTL, the renewed lease still holds.
    tokio::time::sleep(2 * ttl).await;
    assert!(
        b.acquire(&key, ttl).await.unwrap().is_none(),
        "a renewed lease ended at its first TTL"
    );
    a.release(&key, &token).await.unwrap();
    let taken = b.acquire(&key, 5 * SECOND).await.unwrap();
    assert!(
        taken.is_some(),
        "the holder's release did not free the lease"
    );
    assert!(
        !a.renew(&key, &token, 5 * SECOND).await.unwrap(),
        "a released lease was renewed by its old token"
    );
}

/// A period is claimed once per period, by the caller's clock, whoever claims; a zero period
/// always claims; `last_claimed` reads the claim without changing it.
pub async fn claims_once_per_period(
    a: &dyn crate::Lease,
    b: &dyn crate::Lease,
    clock: &ManualClock,
) {
    let key = unique("claims");
    let period = 30 * SECOND;
    assert_eq!(a.last_claimed(&key, "kid-refetch").await.unwrap(), None);
    assert!(
        a.claim_period(&key, "kid-refetch", clock.now(), period)
            .await
            .unwrap()
    );
    let claimed_at = clock.now();
    assert!(
        !b.claim_period(&key, "kid-refetch", clock.now(), period)
            .await
            .unwrap()
    );
    clock.advance(29 * SECOND);
    assert!(
        !b.claim_period(&key, "kid-refetch", clock.now(), period)
            .await
            .unwrap(),
        "claimed twice within the period"
    );
    assert_eq!(
        a.last_claimed(&key, "kid-refetch").await.unwrap(),
        Some(claimed_at)
    );
    clock.advance(SECOND);
    assert!(
        b.claim_period(&key, "kid-refetch", clock.now(), period)
            .await
            .unwrap(),
        "not claimable once the period passed"
    );
    assert_eq!(
        a.last_claimed(&key, "kid-refetch").await.unwrap(),
        Some(clock.now())
    );
    for _ in 0..3 {
        assert!(
            a.claim_period(&key, "attempt", clock.now(), Duration::ZERO)
                .await
                .unwrap()
        );
    }
}

/// Claims of one slot do not claim another slot or another key.
pub async fn claims_are_per_key_and_slot(
    a: &dyn crate::Lease,
    b: &dyn crate::Lease,
    clock: &ManualClock,
) {
    let (key, other) = (unique("claims"), unique("claims"));
    let period = 30 * SECOND;
    assert!(
        a.claim_period(&key, "forced", clock.now(), period)
            .await
            .unwrap()
    );
    assert!(
        b.claim_period(&key, "attempt", clock.now(), period)
            .await
            .unwrap()
    );
    assert!(
        b.claim_period(&other, "forced", clock.now(), period)
            .await
            .unwrap()
    );
    assert_eq!(b.last_claimed(&other, "attempt").await.unwrap(), None);
}

/// The [`Invalidations`](crate::Invalidations) contract, on two handles `a` and `b` to one
/// shared tier: what one publishes, every subscriber of either receives, unchanged.
pub async fn run_invalidations_suite(a: &dyn crate::Invalidations, b: &dyn crate::Invalidations) {
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let sent = crate::Invalidation::new(unique("jwks:suite"), 42);
    // A remote tier subscribes in the background: publish until both subscribers have it.
    let heard = tokio::time::timeout(5 * SECOND, async {
        let (mut got_a, mut got_b) = (None, None);
        loop {
            a.publish(sent.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            got_a = got_a.or_else(|| next_for(&mut on_a, &sent.key));
            got_b = got_b.or_else(|| next_for(&mut on_b, &sent.key));
            if let (Some(a), Some(b)) = (&got_a, &got_b) {
                return (a.clone(), b.clone());
            }
        }
    })
    .await
    .expect("an invalidation never reached a subscriber");
    assert_eq!(heard, (sent.clone(), sent));
}

/// The [`Directory`](crate::Directory) contract, on two handles to one shared tier: what one
/// instance announces the other lists, a later announcement replaces an earlier one, and a
/// document over [`MAX_ABOUT_BYTES`](crate::MAX_ABOUT_BYTES) is refused.
pub async fn run_directory_suite(a: &dyn crate::Directory, b: &dyn crate::Directory) {
    let (first, second) = (unique("jwks:first"), unique("jwks:second"));
    a.announce(&first, r#"{"issuers":["https://a.test/"]}"#)
        .await
        .unwrap();
    b.announce(&second, r#"{"issuers":["https://b.test/"]}"#)
        .await
        .unwrap();
    a.announce(&first, r#"{"issuers":["https://a2.test/"]}"#)
        .await
        .unwrap();
    let listed = b.announced().await.unwrap();
    let about = |key: &str| {
        listed
            .iter()
            .filter(|(listed, _)| listed == key)
            .map(|(_, about)| about.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(about(&first), [r#"{"issuers":["https://a2.test/"]}"#]);
    assert_eq!(about(&second), [r#"{"issuers":["https://b.test/"]}"#]);
    let long = "x".repeat(crate::MAX_ABOUT_BYTES + 1);
    assert!(a.announce(&unique("jwks:long"), &long).await.is_err());
}

/// The first queued invalidation of `key`, if any.
fn next_for(
    received: &mut tokio::sync::broadcast::Receiver<crate::Invalidation>,
    key: &str,
) -> Option<crate::Invalidation> {
    loop {
        match received.try_recv() {
            Ok(invalidation) if invalidation.key == key => return Some(invalidation),
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return None,
        }
    }
}
