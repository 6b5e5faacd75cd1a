//! `Tiered` behaviour and the conformance suite against the reference cache.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jwkstash_core::testkit::{self, FailingCache, MapCache, TestCache, entry_now};
use jwkstash_core::{Cache, CacheError, ManualClock, Tier, Tiered};

fn map(clock: &ManualClock) -> Arc<MapCache<Vec<u8>>> {
    Arc::new(MapCache::new(Arc::new(clock.clone())))
}

#[tokio::test]
async fn reference_cache_passes_the_suite() {
    let clock = ManualClock::default();
    testkit::run_all(map(&clock), map(&clock), &clock).await;
}

#[tokio::test]
async fn tiered_passes_the_suite() {
    let clock = ManualClock::default();
    let a: TestCache = Arc::new(Tiered::new(map(&clock), map(&clock)));
    let b: TestCache = Arc::new(Tiered::new(map(&clock), map(&clock)));
    testkit::run_all(a, b, &clock).await;
}

#[tokio::test]
async fn a_shared_hit_fills_the_near_tier() {
    let clock = ManualClock::default();
    let (near, shared) = (map(&clock), map(&clock));
    let entry = entry_now(&clock, b"keys");
    shared.put("k", entry.clone()).await.unwrap();
    let tiered = Tiered::new(Arc::clone(&near), Arc::clone(&shared));
    assert_eq!(tiered.get("k").await.unwrap(), Some(entry.clone()));
    assert_eq!(near.get("k").await.unwrap(), Some(entry));
}

#[tokio::test]
async fn writes_go_to_both_tiers() {
    let clock = ManualClock::default();
    let (near, shared) = (map(&clock), map(&clock));
    let tiered = Tiered::new(Arc::clone(&near), Arc::clone(&shared));
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    assert!(near.get("k").await.unwrap().is_some());
    assert!(shared.get("k").await.unwrap().is_some());
    tiered.remove("k").await.unwrap();
    assert!(near.get("k").await.unwrap().is_none());
    assert!(shared.get("k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_shared_tier_is_a_miss_not_an_error_and_is_counted() {
    let clock = ManualClock::default();
    let shared = Arc::new(FailingCache::default());
    let tiered = Tiered::new(map(&clock), Arc::clone(&shared));
    assert!(Cache::<Vec<u8>>::get(&tiered, "k").await.unwrap().is_none());
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    assert_eq!(tiered.get("k").await.unwrap().unwrap().value, b"v");
    Cache::<Vec<u8>>::remove(&tiered, "k").await.unwrap();
    assert_eq!(shared.calls(), 3);
    assert_eq!(tiered.shared_failures(), 3);
}

#[tokio::test]
async fn a_read_says_which_tier_answered() {
    let clock = ManualClock::default();
    let (near, shared) = (map(&clock), map(&clock));
    let tiered = Tiered::new(Arc::clone(&near), Arc::clone(&shared));
    assert_eq!(tiered.read::<Vec<u8>>("k", Some).await.unwrap(), None);
    let entry = entry_now(&clock, b"keys");
    shared.put("k", entry.clone()).await.unwrap();
    let (read, tier) = tiered.read("k", Some).await.unwrap().unwrap();
    assert_eq!((read, tier), (entry.clone(), Tier::Shared));
    let (read, tier) = tiered.read("k", Some).await.unwrap().unwrap();
    assert_eq!((read, tier), (entry, Tier::Near));
}

#[tokio::test]
async fn the_shared_tiers_entry_passes_admission_before_it_is_kept() {
    let clock = ManualClock::default();
    let (near, shared) = (map(&clock), map(&clock));
    shared
        .put("k", entry_now(&clock, b"planted"))
        .await
        .unwrap();
    let tiered = Tiered::new(Arc::clone(&near), Arc::clone(&shared));
    // Refused: not returned, not copied to the near tier.
    assert_eq!(tiered.read::<Vec<u8>>("k", |_| None).await.unwrap(), None);
    assert_eq!(near.get("k").await.unwrap(), None);
    // Changed by the reader (a clamp): the changed entry is what is kept.
    let clamped = entry_now(&clock, b"clamped");
    let kept = clamped.clone();
    let (read, _) = tiered
        .read("k", move |_| Some(kept.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, clamped);
    assert_eq!(near.get("k").await.unwrap(), Some(clamped));
    // read_shared skips the near tier.
    let fresh = entry_now(&clock, b"newer");
    shared.put("k", fresh.clone()).await.unwrap();
    assert_eq!(tiered.read_shared("k", Some).await, Some(fresh.clone()));
    assert_eq!(near.get("k").await.unwrap(), Some(fresh));
}

#[tokio::test]
async fn the_near_tier_alone_needs_no_shared_tier() {
    let clock = ManualClock::default();
    let near = map(&clock);
    let tiered: Tiered<_, Arc<MapCache<Vec<u8>>>> = Tiered::alone(Arc::clone(&near));
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    let (_, tier) = tiered.read::<Vec<u8>>("k", Some).await.unwrap().unwrap();
    assert_eq!(tier, Tier::Near);
    assert_eq!(tiered.read_shared::<Vec<u8>>("k", Some).await, None);
    assert!(tiered.shared().is_none());
}

#[tokio::test]
async fn the_snapshot_tier_is_read_last_and_fills_the_near_tier_only() {
    let clock = ManualClock::default();
    let (near, shared, snapshot) = (map(&clock), map(&clock), map(&clock));
    let old = entry_now(&clock, b"last known good");
    snapshot.put("k", old.clone()).await.unwrap();
    let tiered =
        Tiered::new(Arc::clone(&near), Arc::clone(&shared)).with_snapshot(Arc::clone(&snapshot));
    let (read, tier) = tiered.read("k", Some).await.unwrap().unwrap();
    assert_eq!((read, tier), (old.clone(), Tier::Snapshot));
    assert_eq!(near.get("k").await.unwrap(), Some(old.clone()));
    // An old snapshot is not pushed into the fleet's tier.
    assert!(shared.get("k").await.unwrap().is_none());
    // The shared tier answers before the snapshot, and what it had is kept in the snapshot.
    clock.advance(std::time::Duration::from_secs(1));
    let newer = entry_now(&clock, b"from the fleet");
    shared.put("n", newer.clone()).await.unwrap();
    snapshot.put("n", old.clone()).await.unwrap();
    let (read, tier) = tiered.read("n", Some).await.unwrap().unwrap();
    assert_eq!((read, tier), (newer.clone(), Tier::Shared));
    assert_eq!(snapshot.get("n").await.unwrap(), Some(newer));
    // Writes and removals reach the snapshot.
    tiered.put("w", entry_now(&clock, b"w")).await.unwrap();
    assert!(snapshot.get("w").await.unwrap().is_some());
    tiered.remove("w").await.unwrap();
    assert!(snapshot.get("w").await.unwrap().is_none());
}

#[tokio::test]
async fn a_refused_or_failing_snapshot_is_a_miss_and_is_counted() {
    let clock = ManualClock::default();
    let (near, snapshot) = (map(&clock), map(&clock));
    snapshot.put("k", entry_now(&clock, b"v")).await.unwrap();
    let tiered =
        Tiered::<_, Arc<MapCache<Vec<u8>>>>::alone(Arc::clone(&near)).with_snapshot(snapshot);
    assert!(tiered.read("k", |_| None).await.unwrap().is_none());
    assert!(near.get("k").await.unwrap().is_none());
    let failing = Arc::new(FailingCache::default());
    let tiered =
        Tiered::<_, Arc<MapCache<Vec<u8>>>>::alone(map(&clock)).with_snapshot(Arc::clone(&failing));
    assert!(Cache::<Vec<u8>>::get(&tiered, "k").await.unwrap().is_none());
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    assert_eq!(tiered.get("k").await.unwrap().unwrap().value, b"v");
    assert_eq!(
        (tiered.snapshot_failures(), tiered.shared_failures()),
        (2, 0)
    );
}

/// A tier that takes `delay` (on tokio's clock) for every call, then asks `inner`.
#[derive(Debug)]
struct Slow {
    inner: Arc<MapCache<Vec<u8>>>,
    delay: std::time::Duration,
}

#[async_trait::async_trait]
impl Cache<Vec<u8>> for Slow {
    async fn get(&self, key: &str) -> Result<Option<jwkstash_core::Entry<Vec<u8>>>, CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, entry: jwkstash_core::Entry<Vec<u8>>) -> Result<(), CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.put(key, entry).await
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.remove(key).await
    }

    fn name(&self) -> &'static str {
        "slow"
    }
}

/// A write waits for the slower of the shared and snapshot tiers, not for both in turn: on
/// tokio's paused clock, a put and a remove each take exactly the longer delay.
#[tokio::test(start_paused = true)]
async fn writes_reach_the_outer_tiers_together() {
    use std::time::Duration;
    let clock = ManualClock::default();
    let (near, shared, snapshot) = (map(&clock), map(&clock), map(&clock));
    let tiered = Tiered::new(
        Arc::clone(&near),
        Slow {
            inner: Arc::clone(&shared),
            delay: Duration::from_millis(300),
        },
    )
    .with_snapshot(Slow {
        inner: Arc::clone(&snapshot),
        delay: Duration::from_millis(200),
    });
    let start = tokio::time::Instant::now();
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    for tier in [&near, &shared, &snapshot] {
        assert!(tier.get("k").await.unwrap().is_some());
    }
    let start = tokio::time::Instant::now();
    Cache::<Vec<u8>>::remove(&tiered, "k").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    for tier in [&near, &shared, &snapshot] {
        assert!(tier.get("k").await.unwrap().is_none());
    }
}
