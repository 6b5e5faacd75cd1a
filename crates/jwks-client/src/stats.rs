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
    /// Upstream fetches that brought a usable set (200 or 304), stored in the cache stack.
    pub fetch_successes: u64,
    /// Upstream fetches by this instance because it had no usable set.
    pub fetches_cold: u64,
    /// Upstream fetches by this instance inside the refresh-ahead window.
    pub fetches_refresh_ahead: u64,
    /// Upstream fetches by this instance for a set past its freshness.
    pub fetches_stale: u64,
    /// Upstream fetches by this instance for an unknown `kid`.
    pub fetches_unknown_kid: u64,
    /// Upstream fetches by this instance because a known `kid`'s key failed a signature (a
    /// provider may reuse a kid for a new key).
    pub fetches_reused_kid: u64,
    /// Upstream fetches by this instance for [`Verifier::refresh`](crate::Verifier::refresh).
    pub fetches_forced: u64,
    /// Callers that waited for a fetch (cold start, or past `max_stale`) instead of a cache hit.
    pub waited_for_fetch: u64,
    /// Unknown-`kid` lookups (and failed signatures under a known `kid`) that caused or joined
    /// a refetch.
    pub unknown_kid_refetches: u64,
    /// Unknown-`kid` lookups (and failed signatures under a known `kid`) answered without a
    /// refetch (cooldown, known absent or unchanged, backoff).
    pub unknown_kid_suppressed: u64,
    /// Verifications answered from a set past its freshness (within `max_stale`) while a
    /// refresh ran in the background or the source backed off after failures.
    pub stale_served: u64,
    /// Tokens with an unknown `kid` that stopped waiting for the refetch after
    /// `unknown_kid_wait` (answered 503; the refetch went on).
    pub unknown_kid_timeouts: u64,
    /// Signature checks made (a verified-token cache hit makes none).
    pub signature_checks: u64,
    /// Tokens served from the verified-token cache.
    pub verified_token_hits: u64,
    /// Key lookups answered by the pinned current set (no cache call).
    pub pinned_hits: u64,
    /// Key set reads answered by the in-process tier.
    pub near_hits: u64,
    /// Key set reads answered by the shared tier (Redis).
    pub shared_hits: u64,
    /// Key set reads answered by the snapshot tier (a set kept across restarts).
    pub snapshot_hits: u64,
    /// Key set reads that found nothing usable in any tier.
    pub cache_misses: u64,
    /// Times the shared tier's invalidations woke this verifier (to read a new set, or after
    /// lost messages): only messages about its own entry do.
    pub invalidations_heard: u64,
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

#[cfg(feature = "metrics")]
thread_local! {
    /// While [`shared_label`] runs: the `issuer` label that the verifiers it builds take
    /// instead of their own issuer.
    static SHARED_LABEL: std::cell::RefCell<Option<Box<str>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `build` (which builds verifiers, on this thread) so that each verifier it builds labels
/// its metrics `issuer = label`, a value shared with others, instead of its own issuer, and
/// records no key-set gauges (one gauge written by many verifiers would show whichever wrote
/// last). `None`: their own issuer, as usual. Their counters add up under the shared label;
/// each verifier's [`Stats`] stay its own.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn shared_label<T>(label: Option<&str>, build: impl FnOnce() -> T) -> T {
    #[cfg(feature = "metrics")]
    {
        /// Puts the previous label back, however `build` ends.
        struct Restore(Option<Box<str>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                SHARED_LABEL.with_borrow_mut(|label| *label = previous);
            }
        }
        let previous =
            SHARED_LABEL.with_borrow_mut(|shared| std::mem::replace(shared, label.map(Into::into)));
        let _restore = Restore(previous);
        build()
    }
    #[cfg(not(feature = "metrics"))]
    build()
}

/// Each counter of [`Stats`], with the metric (name, label) it also feeds with feature `metrics`.
macro_rules! counters {
    ($($field:ident: $kind:ty => $bump:ident [$metric:literal $(, $label:literal => $value:literal)?]),* $(,)?) => {
        /// Relaxed atomic counters behind [`Stats`] (and the `metrics` facade, when enabled).
        #[derive(Debug)]
        pub(crate) struct Counters {
            $($field: $kind,)*
            #[cfg(feature = "metrics")]
            metrics: Metrics,
        }

        /// Metric handles, registered once when the verifier is built.
        #[cfg(feature = "metrics")]
        #[derive(Debug)]
        struct Metrics {
            $($field: metrics::Counter,)*
            fetch_duration: metrics::Histogram,
            key_set_fetched_at: metrics::Gauge,
            key_set_age: metrics::Gauge,
        }

        impl Counters {
            /// Counters for a verifier of `issuer` (the metrics' `issuer` label, unless built
            /// inside [`shared_label`]).
            #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
            pub(crate) fn new(issuer: &str) -> Self {
                #[cfg(feature = "metrics")]
                let metrics = {
                    let shared = SHARED_LABEL.with_borrow(Clone::clone);
                    let issuer: String = shared.as_deref().unwrap_or(issuer).to_owned();
                    let gauge = |name: &'static str| match shared {
                        Some(_) => metrics::Gauge::noop(),
                        None => metrics::gauge!(name, "issuer" => issuer.clone()),
                    };
                    Metrics {
                        $($field: metrics::counter!($metric, "issuer" => issuer.clone() $(, $label => $value)?),)*
                        fetch_duration: metrics::histogram!("jwkstash_fetch_duration_seconds", "issuer" => issuer.clone()),
                        key_set_fetched_at: gauge("jwkstash_key_set_fetched_at_seconds"),
                        key_set_age: gauge("jwkstash_key_set_age_seconds"),
                    }
                };
                Self {
                    $($field: <$kind>::default(),)*
                    #[cfg(feature = "metrics")]
                    metrics,
                }
            }

            $(pub(crate) fn $bump(&self) {
                self.$field.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "metrics")]
                self.metrics.$field.increment(1);
            })*

            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                }
            }

            /// Records how long an upstream fetch took.
            #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
            pub(crate) fn fetch_took(&self, duration: std::time::Duration) {
                #[cfg(feature = "metrics")]
                self.metrics.fetch_duration.record(duration.as_secs_f64());
            }

            /// Records the fetch time of the set in use, and its age at `now`.
            #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
            pub(crate) fn key_set(&self, fetched_at: std::time::SystemTime, now: std::time::SystemTime) {
                #[cfg(feature = "metrics")]
                {
                    let since_epoch = fetched_at
                        .duration_since(std::time::SystemTime::UNIX_EPOCH)
                        .unwrap_or_default();
                    self.metrics.key_set_fetched_at.set(since_epoch.as_secs_f64());
                    let age = now.duration_since(fetched_at).unwrap_or_default();
                    self.metrics.key_set_age.set(age.as_secs_f64());
                }
            }
        }
    };
}

counters! {
    verified: Sharded => verified ["jwkstash_verifications_total", "outcome" => "verified"],
    rejected: Sharded => rejected ["jwkstash_verifications_total", "outcome" => "invalid"],
    unavailable: AtomicU64 => unavailable ["jwkstash_verifications_total", "outcome" => "unavailable"],
    pinned_hits: Sharded => pinned_hit ["jwkstash_cache_hits_total", "tier" => "pinned"],
    near_hits: AtomicU64 => near_hit ["jwkstash_cache_hits_total", "tier" => "near"],
    shared_hits: AtomicU64 => shared_hit ["jwkstash_cache_hits_total", "tier" => "shared"],
    snapshot_hits: AtomicU64 => snapshot_hit ["jwkstash_cache_hits_total", "tier" => "snapshot"],
    cache_misses: AtomicU64 => cache_miss ["jwkstash_cache_misses_total"],
    fetches: AtomicU64 => fetch ["jwkstash_fetches_total", "result" => "started"],
    fetch_failures: AtomicU64 => fetch_failed ["jwkstash_fetches_total", "result" => "failed"],
    fetch_successes: AtomicU64 => fetch_succeeded ["jwkstash_fetches_total", "result" => "ok"],
    fetches_cold: AtomicU64 => fetch_cold ["jwkstash_fetch_reasons_total", "reason" => "cold"],
    fetches_refresh_ahead: AtomicU64 => fetch_refresh_ahead ["jwkstash_fetch_reasons_total", "reason" => "refresh_ahead"],
    fetches_stale: AtomicU64 => fetch_stale ["jwkstash_fetch_reasons_total", "reason" => "stale"],
    fetches_unknown_kid: AtomicU64 => fetch_unknown_kid ["jwkstash_fetch_reasons_total", "reason" => "unknown_kid"],
    fetches_reused_kid: AtomicU64 => fetch_reused_kid ["jwkstash_fetch_reasons_total", "reason" => "reused_kid"],
    fetches_forced: AtomicU64 => fetch_forced ["jwkstash_fetch_reasons_total", "reason" => "forced"],
    waited_for_fetch: AtomicU64 => waited_for_load ["jwkstash_waited_for_fetch_total"],
    unknown_kid_refetches: AtomicU64 => kid_refetch ["jwkstash_unknown_kid_refetches_total"],
    unknown_kid_suppressed: AtomicU64 => kid_refetch_suppressed ["jwkstash_unknown_kid_suppressed_total"],
    stale_served: Sharded => stale_served ["jwkstash_stale_served_total"],
    unknown_kid_timeouts: AtomicU64 => kid_refetch_timed_out ["jwkstash_unknown_kid_timeouts_total"],
    signature_checks: Sharded => signature_checked ["jwkstash_signature_checks_total"],
    verified_token_hits: Sharded => verified_token_hit ["jwkstash_verified_token_cache_hits_total"],
    invalidations_heard: AtomicU64 => invalidation_heard ["jwkstash_invalidations_heard_total"],
}
