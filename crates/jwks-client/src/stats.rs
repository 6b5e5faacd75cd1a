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

macro_rules! counters {
    ($($field:ident => $bump:ident),* $(,)?) => {
        /// Relaxed atomic counters behind [`Stats`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $($field: AtomicU64,)*
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
    verified => verified,
    rejected => rejected,
    unavailable => unavailable,
    fetches => fetch,
    fetch_failures => fetch_failed,
    waited_for_fetch => waited_for_load,
    unknown_kid_refetches => kid_refetch,
    unknown_kid_suppressed => kid_refetch_suppressed,
    stale_served => stale_served,
    signature_checks => signature_checked,
    verified_token_hits => verified_token_hit,
}
