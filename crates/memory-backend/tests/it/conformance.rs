//! The core conformance suite against the moka tier.

use std::sync::Arc;

use jwkstash_core::{ManualClock, testkit};
use jwkstash_memory::MemoryCache;

fn cache(clock: &ManualClock) -> testkit::TestCache {
    Arc::new(
        MemoryCache::<Vec<u8>>::builder()
            .clock(Arc::new(clock.clone()))
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_passes_the_conformance_suite() {
    let clock = ManualClock::default();
    testkit::run_all(cache(&clock), cache(&clock), &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_passes_the_lease_and_invalidations_suites() {
    let clock = ManualClock::default();
    let cache = MemoryCache::<Vec<u8>>::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    // Two handles to one process's tier, as two verifiers sharing it.
    let other = cache.clone();
    testkit::run_lease_suite(&cache, &other, &clock).await;
    testkit::run_invalidations_suite(&cache, &other).await;
    testkit::run_directory_suite(&cache, &other).await;
}

#[tokio::test]
async fn capacity_is_bounded() {
    let clock = ManualClock::default();
    let cache = MemoryCache::<Vec<u8>>::builder()
        .clock(Arc::new(clock.clone()))
        .max_capacity(10)
        .build();
    for i in 0..1_000 {
        jwkstash_core::Cache::put(&cache, &format!("k{i}"), testkit::entry_now(&clock, b"v"))
            .await
            .ok();
    }
    // moka applies evictions in batches; run them before counting.
    cache.run_pending_tasks().await;
    assert!(cache.entry_count() <= 10, "held {}", cache.entry_count());
}
