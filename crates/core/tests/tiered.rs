//! `Tiered` behaviour and the conformance suite against the reference cache.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jwkstash_core::testkit::{self, FailingCache, MapCache, TestCache, entry_now};
use jwkstash_core::{Cache, ManualClock, Tiered};

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
async fn a_far_hit_fills_the_near_tier() {
    let clock = ManualClock::default();
    let (near, far) = (map(&clock), map(&clock));
    let entry = entry_now(&clock, b"keys");
    far.put("k", entry.clone()).await.unwrap();
    let tiered = Tiered::new(Arc::clone(&near), Arc::clone(&far));
    assert_eq!(tiered.get("k").await.unwrap(), Some(entry.clone()));
    assert_eq!(near.get("k").await.unwrap(), Some(entry));
}

#[tokio::test]
async fn writes_go_to_both_tiers() {
    let clock = ManualClock::default();
    let (near, far) = (map(&clock), map(&clock));
    let tiered = Tiered::new(Arc::clone(&near), Arc::clone(&far));
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    assert!(near.get("k").await.unwrap().is_some());
    assert!(far.get("k").await.unwrap().is_some());
    tiered.remove("k").await.unwrap();
    assert!(near.get("k").await.unwrap().is_none());
    assert!(far.get("k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_far_tier_is_a_miss_not_an_error() {
    let clock = ManualClock::default();
    let far = Arc::new(FailingCache::default());
    let tiered = Tiered::new(map(&clock), Arc::clone(&far));
    assert!(Cache::<Vec<u8>>::get(&tiered, "k").await.unwrap().is_none());
    tiered.put("k", entry_now(&clock, b"v")).await.unwrap();
    assert_eq!(tiered.get("k").await.unwrap().unwrap().value, b"v");
    Cache::<Vec<u8>>::remove(&tiered, "k").await.unwrap();
    assert_eq!(far.calls(), 3);
}
