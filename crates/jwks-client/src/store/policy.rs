//! When key sets are refreshed, how long they are kept, and how hard the provider is asked.

use std::time::Duration;

use crate::error::{BuildError, human};

/// The default [`fetch_timeout`](FreshnessPolicy::fetch_timeout): a little over the HTTP
/// source's own total deadline (5 s), so that its more precise error comes first.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(6);

/// The freshness policy of a verifier. Every setting has a documented default; `build()` of the
/// verifier refuses inconsistent values.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `ttl` | 10 min | freshness when the provider sends no `max-age` |
/// | `min_ttl` / `max_ttl` | 1 min / 24 h | the provider's `max-age` is clamped to this range |
/// | `refresh_ahead` | 1 min | a background refresh starts this long before expiry (at most half the TTL) |
/// | `max_stale` | 1 h | how long past expiry the last good set is served while the provider fails |
/// | `unknown_kid_cooldown` | 30 s | at most one refetch for unknown `kid`s per this period |
/// | `unknown_kid_wait` | 1 s | how long a token with an unknown `kid` waits for that refetch |
/// | `negative_cache_capacity` | 4,096 | unknown `kid`s remembered as absent from the current set |
/// | `negative_ttl` | 5 min | how long such a `kid` is refused without a refetch (while the set is unchanged) |
/// | `backoff_initial` / `backoff_max` | 1 s / 60 s | delay between failed refetches, doubling, jittered |
/// | `min_refresh_interval` | 5 s | at most one forced [`refresh`](crate::Verifier::refresh) per this period (per fleet) |
/// | `fetch_timeout` | 6 s | the longest any one fetch of the key source may take, whatever the source |
///
/// # When a verification waits
///
/// Never while a usable set exists. A set is *fresh* until `fetched_at + ttl`, then *stale*
/// until `max_stale` later. A fresh set is served at once (from `ttl - refresh_ahead` on, a
/// background refresh starts). A stale set is served at once too (stale-while-revalidate): a
/// background refresh starts unless one is running or the source is backing off after a
/// failure; the served verifications are counted in [`Stats::stale_served`](crate::Stats).
/// One refresh runs per verifier (per fleet, with a shared tier), whatever the traffic.
///
/// Only a verifier without a usable set (cold start, or past `max_stale`) waits for a fetch,
/// and only while the source is not backing off: during a backoff it answers
/// [`KeysUnavailable`](crate::KeysUnavailable) at once, with the time until the next attempt
/// as `retry_after`. Past `max_stale` the verifier fails closed (503): it never verifies with
/// keys older than `ttl + max_stale`.
///
/// A token whose `kid` is not in the set waits for a refetch (at most once per
/// `unknown_kid_cooldown`) no longer than `unknown_kid_wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshnessPolicy {
    pub(crate) ttl: Duration,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) refresh_ahead: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) unknown_kid_cooldown: Duration,
    pub(crate) unknown_kid_wait: Duration,
    pub(crate) negative_cache_capacity: u64,
    pub(crate) negative_ttl: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) min_refresh_interval: Duration,
    pub(crate) fetch_timeout: Duration,
}

impl Default for FreshnessPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            refresh_ahead: Duration::from_secs(60),
            max_stale: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(30),
            unknown_kid_wait: Duration::from_secs(1),
            negative_cache_capacity: 4096,
            negative_ttl: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            min_refresh_interval: Duration::from_secs(5),
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    )*};
}

impl FreshnessPolicy {
    setters! {
        /// Freshness when the provider sends no `max-age`.
        ttl: Duration;
        /// The shortest freshness, whatever the provider's `max-age` says.
        min_ttl: Duration;
        /// The longest freshness, whatever the provider's `max-age` says.
        max_ttl: Duration;
        /// How long before expiry a background refresh starts (capped at half the TTL).
        refresh_ahead: Duration;
        /// How long past expiry the last good set is still served while the provider fails.
        max_stale: Duration;
        /// The shortest time between two refetches caused by unknown `kid`s.
        unknown_kid_cooldown: Duration;
        /// How long a token whose `kid` is not in the set waits for the refetch. The refetch
        /// goes on in the background when the wait ends, and its set serves later tokens; the
        /// token that stopped waiting gets [`KeysUnavailable`](crate::KeysUnavailable) (503
        /// with `Retry-After`), not "unknown kid": the provider has not answered, and the kid
        /// may belong to a rotation that is not yet seen. Zero: never wait.
        unknown_kid_wait: Duration;
        /// How many unknown `kid`s are remembered as absent.
        negative_cache_capacity: u64;
        /// How long a `kid` found absent stays known as absent (while the set is unchanged).
        negative_ttl: Duration;
        /// The delay after the first failed fetch.
        backoff_initial: Duration;
        /// The longest delay between failed fetches.
        backoff_max: Duration;
        /// The shortest time between two forced refreshes
        /// ([`Verifier::refresh`](crate::Verifier::refresh)), fleet-wide with a shared tier:
        /// calls within it share the last one.
        min_refresh_interval: Duration;
        /// The longest one fetch of the key source may take, enforced by the verifier for every
        /// source (a third-party [`KeySource`](jwkstash_core::KeySource), a file on a hung
        /// mount, a [`Failover`](crate::Failover) of two slow sources), so that no caller waits
        /// on a hung source forever and no later load joins a hung one. A fetch that times out
        /// is a failed fetch (backoff, events, metrics). In a fleet, instances waiting for the
        /// lease holder wait at most this long plus twice the lease TTL.
        fetch_timeout: Duration;
    }

    /// The freshness of a set fetched with this `max-age` hint.
    pub fn ttl_for(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.ttl)
            .clamp(self.min_ttl, self.max_ttl)
    }

    /// How long before expiry a set with this TTL is refreshed.
    pub fn refresh_ahead_for(&self, ttl: Duration) -> Duration {
        self.refresh_ahead.min(ttl / 2)
    }

    /// The delay before the next attempt after `failures` consecutive failures (without jitter).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }

    /// Refuses inconsistent values, saying which, with the values given and the defaults.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let default = Self::default();
        let invalid = |why: String| Err(BuildError::invalid_setting(why));
        if self.min_ttl.is_zero() {
            return invalid(format!(
                "min_ttl must be positive (default {})",
                human(default.min_ttl)
            ));
        }
        if self.min_ttl > self.max_ttl || !(self.min_ttl..=self.max_ttl).contains(&self.ttl) {
            let hint = if self.min_ttl > self.max_ttl {
                "min_ttl must not exceed max_ttl"
            } else if self.ttl < self.min_ttl {
                "for a shorter ttl, lower min_ttl too"
            } else {
                "for a longer ttl, raise max_ttl too"
            };
            return invalid(format!(
                "ttl must lie within min_ttl..=max_ttl: ttl is {}, min_ttl {}, max_ttl {} \
                 (defaults: ttl {}, min_ttl {}, max_ttl {}); {hint}",
                human(self.ttl),
                human(self.min_ttl),
                human(self.max_ttl),
                human(default.ttl),
                human(default.min_ttl),
                human(default.max_ttl),
            ));
        }
        let positive = [
            (
                "unknown_kid_cooldown",
                self.unknown_kid_cooldown,
                default.unknown_kid_cooldown,
            ),
            (
                "min_refresh_interval",
                self.min_refresh_interval,
                default.min_refresh_interval,
            ),
            ("fetch_timeout", self.fetch_timeout, default.fetch_timeout),
        ];
        for (name, value, default) in positive {
            if value.is_zero() {
                return invalid(format!(
                    "{name} must be positive (default {})",
                    human(default)
                ));
            }
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return invalid(format!(
                "backoff_initial must be positive and at most backoff_max: backoff_initial is \
                 {}, backoff_max {} (defaults: backoff_initial {}, backoff_max {})",
                human(self.backoff_initial),
                human(self.backoff_max),
                human(default.backoff_initial),
                human(default.backoff_max),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_outside_its_bounds_is_refused_with_the_bound_to_move() {
        let minutes = |n: u64| Duration::from_secs(60 * n);
        let cases = [
            // min_ttl above max_ttl: whatever the ttl, the bounds themselves are wrong.
            ((5, 20, 10), "min_ttl must not exceed max_ttl"),
            ((20, 20, 10), "min_ttl must not exceed max_ttl"),
            ((1, 5, 10), "for a shorter ttl, lower min_ttl too"),
            ((30, 5, 10), "for a longer ttl, raise max_ttl too"),
            // Equal bounds are a fixed TTL, not an error of the bounds.
            ((10, 5, 5), "for a longer ttl, raise max_ttl too"),
            ((1, 5, 5), "for a shorter ttl, lower min_ttl too"),
        ];
        for ((ttl, min_ttl, max_ttl), hint) in cases {
            let policy = FreshnessPolicy::default()
                .ttl(minutes(ttl))
                .min_ttl(minutes(min_ttl))
                .max_ttl(minutes(max_ttl));
            let message = match policy.validate() {
                Err(error) => error.to_string(),
                Ok(()) => panic!("ttl {ttl} min, bounds {min_ttl}..={max_ttl} min accepted"),
            };
            assert!(message.ends_with(hint), "{message}");
        }
        let fixed = FreshnessPolicy::default()
            .ttl(minutes(5))
            .min_ttl(minutes(5))
            .max_ttl(minutes(5));
        assert!(fixed.validate().is_ok());
    }

    #[test]
    fn durations_read_as_the_documentation_writes_them() {
        let cases = [
            (Duration::from_secs(24 * 3600), "24 h"),
            (Duration::from_secs(60), "1 min"),
            (Duration::from_secs(600), "10 min"),
            (Duration::from_secs(90), "90 s"),
            (Duration::from_secs(2), "2 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::ZERO, "0 s"),
        ];
        for (duration, text) in cases {
            assert_eq!(human(duration), text, "{duration:?}");
        }
    }
}
