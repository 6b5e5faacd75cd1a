//! Counters of what a verifier did, for code that does not use a metrics exporter.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a verifier's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Tokens accepted.
    pub verified: u64,
    /// Tokens refused as invalid (401).
    pub rejected: u64,
    /// Verifications that failed because keys were unavailable (503).
    pub unavailable: u64,
    /// Calls to the key source (upstream fetches), successful or not.
    pub fetches: u64,
    /// Upstream fetches that failed or brought no usable set.
    pub fetch_failures: u64,
    /// Callers that waited for a fetch (cold start, stale set) instead of a cache hit.
    pub waited_for_fetch: u64,
    /// Unknown-`kid` lookups that caused or joined a refetch.
    pub unknown_kid_refetches: u64,
    /// Unknown-`kid` lookups refused without a refetch (cooldown, known absent, backoff).
    pub unknown_kid_suppressed: u64,
    /// Times a stale set was served because the source failed.
    pub stale_served: u64,
    /// Signature checks made (a verified-token cache hit makes none).
    pub signature_checks: u64,
    /// Tokens served from the verified-token cache.
    pub verified_token_hits: u64,
}

impl Stats {
    /// The share of verifications that did not wait for the network.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.verified + self.rejected + self.unavailable;
        if total == 0 {
            return 0.0;
        }
        1.0 - self.waited_for_fetch.min(total) as f64 / total as f64
    }
}

/// A counter bumped on the hit path by every task: one cache line per shard, so that threads
/// do not contend for one line.
#[derive(Debug, Default)]
struct Sharded([Padded; SHARDS]);

const SHARDS: usize = 16;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SHARDS
    };
}

impl Sharded {
    fn bump(&self) {
        let shard = SHARD.with(|shard| *shard);
        self.0[shard].0.fetch_add(1, Ordering::Relaxed);
    }

    fn load(&self, _: Ordering) -> u64 {
        self.0
            .iter()
            .map(|padded| padded.0.load(Ordering::Relaxed))
            .sum()
    }

    fn fetch_add(&self, _: u64, _: Ordering) {
        self.bump();
    }
}

macro_rules! counters {
    ($($field:ident: $kind:ty => $bump:ident),* $(,)?) => {
        /// Relaxed atomic counters behind [`Stats`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $($field: $kind,)*
        }

        impl Counters {
            $(pub(crate) fn $bump(&self) {
                self.$field.fetch_add(1, Ordering::Relaxed);
            })*

            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    verified: Sharded => verified,
    rejected: Sharded => rejected,
    unavailable: AtomicU64 => unavailable,
    fetches: AtomicU64 => fetch,
    fetch_failures: AtomicU64 => fetch_failed,
    waited_for_fetch: AtomicU64 => waited_for_load,
    unknown_kid_refetches: AtomicU64 => kid_refetch,
    unknown_kid_suppressed: AtomicU64 => kid_refetch_suppressed,
    stale_served: AtomicU64 => stale_served,
    signature_checks: Sharded => signature_checked,
    verified_token_hits: Sharded => verified_token_hit,
}
