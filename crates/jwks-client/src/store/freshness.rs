//! The one place that decides what a verification does with the key set it has: a pure
//! function of the set's times, the source's health, whether a load is running, the clock and
//! the policy. The store only carries the decision out.

use std::time::{Duration, SystemTime};

use crate::store::policy::FreshnessPolicy;

/// The times of the set a verifier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetTimes {
    pub(crate) fetched_at: SystemTime,
    pub(crate) fresh_until: SystemTime,
    pub(crate) usable_until: SystemTime,
}

/// The state of a verifier's keys, for readiness probes and dashboards: read from memory,
/// without any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyHealth {
    /// A fresh set is held; it is refreshed (in the background) before `until`.
    Fresh {
        /// When the set stops being fresh.
        until: SystemTime,
    },
    /// The set is past its freshness and still served (the provider failed or a refresh is
    /// running); verifications succeed until `until` (`max_stale` past `since`).
    Stale {
        /// When the set stopped being fresh.
        since: SystemTime,
        /// When it stops being used.
        until: SystemTime,
    },
    /// No usable set: verifications answer `KeysUnavailable` (503) until one is fetched.
    Unavailable {
        /// When the next fetch may be tried, if the source is backing off.
        retry_after: Option<Duration>,
    },
}

impl KeyHealth {
    /// Whether verifications can succeed now: fresh or stale, not unavailable. A readiness
    /// probe that takes stale sets as ready keeps serving through a provider outage.
    pub fn is_ready(&self) -> bool {
        !matches!(self, Self::Unavailable { .. })
    }

    /// The health of a verifier holding a set with `times` (or none) at `now`.
    pub(crate) fn of(
        set: Option<SetTimes>,
        retry_after: Option<Duration>,
        now: SystemTime,
    ) -> Self {
        match set {
            Some(times) if now < times.fresh_until => Self::Fresh {
                until: times.fresh_until,
            },
            Some(times) if now < times.usable_until => Self::Stale {
                since: times.fresh_until,
                until: times.usable_until,
            },
            _ => Self::Unavailable { retry_after },
        }
    }
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Situation<'a> {
    /// The set held (pinned or cached), if any.
    pub(crate) set: Option<SetTimes>,
    /// How long the source is still backing off after failures, if it is.
    pub(crate) backing_off: Option<Duration>,
    /// Whether a load (refresh or refetch) is running now.
    pub(crate) loading: bool,
    pub(crate) now: SystemTime,
    pub(crate) policy: &'a FreshnessPolicy,
}

/// What a verification does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Use the set as it is.
    Serve,
    /// Use the set; start a background refresh (it is inside the refresh-ahead window).
    ServeAndRefresh,
    /// Use the set past its freshness (stale-while-revalidate): a load is already running or
    /// the source is backing off.
    ServeStale,
    /// Use the set past its freshness and start a background refresh.
    ServeStaleAndRefresh,
    /// No usable set: wait for a load (joining the one running, or starting one).
    WaitForLoad,
    /// No usable set and the source is backing off: refuse at once, retry after this long.
    Refuse(Duration),
}

impl Action {
    /// Whether the held set is used past its freshness.
    pub(crate) fn is_stale(self) -> bool {
        matches!(self, Self::ServeStale | Self::ServeStaleAndRefresh)
    }

    /// Whether a background refresh should start.
    pub(crate) fn refreshes(self) -> bool {
        matches!(self, Self::ServeAndRefresh | Self::ServeStaleAndRefresh)
    }
}

/// When a set with these times is due for its refresh-ahead.
pub(crate) fn refresh_at(times: SetTimes, policy: &FreshnessPolicy) -> SystemTime {
    let ttl = times
        .fresh_until
        .duration_since(times.fetched_at)
        .unwrap_or_default();
    times.fresh_until - policy.refresh_ahead_for(ttl)
}

/// Decides what a verification does. A usable set is always served at once: only a verifier
/// without one (cold start, or past `max_stale`) waits, and never while the source backs off.
pub(crate) fn decide(situation: Situation<'_>) -> Action {
    let Situation {
        set,
        backing_off,
        loading,
        now,
        policy,
    } = situation;
    // A refresh is worth starting when none runs and the source is not backing off.
    let may_refresh = !loading && backing_off.is_none();
    match set {
        Some(times) if now < times.fresh_until => {
            if may_refresh && now >= refresh_at(times, policy) {
                Action::ServeAndRefresh
            } else {
                Action::Serve
            }
        }
        Some(times) if now < times.usable_until => {
            if may_refresh {
                Action::ServeStaleAndRefresh
            } else {
                Action::ServeStale
            }
        }
        _ => match backing_off {
            Some(retry_after) if !loading => Action::Refuse(retry_after),
            _ => Action::WaitForLoad,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// A set fetched at t = 0, fresh for 600 s (refresh-ahead from 540 s), usable until 4200 s.
    fn set() -> SetTimes {
        let fetched_at = SystemTime::UNIX_EPOCH + 1_000_000 * SEC;
        SetTimes {
            fetched_at,
            fresh_until: fetched_at + 600 * SEC,
            usable_until: fetched_at + 4200 * SEC,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        set().fetched_at + Duration::from_secs(seconds)
    }

    /// (case, set held, backing off, a load running, seconds since the fetch, the action).
    type Row = (
        &'static str,
        Option<SetTimes>,
        Option<Duration>,
        bool,
        u64,
        Action,
    );

    #[test]
    fn every_case_has_one_action() {
        let policy = FreshnessPolicy::default();
        let backoff = Some(8 * SEC);
        #[rustfmt::skip]
        let rows: &[Row] = &[
            // case                                   set        backing off loading  now   action
            ("fresh",                                 Some(set()), None,    false,   10, Action::Serve),
            ("fresh, backing off",                    Some(set()), backoff, false,   10, Action::Serve),
            ("fresh, loading",                        Some(set()), None,    true,    10, Action::Serve),
            ("inside refresh-ahead",                  Some(set()), None,    false,  540, Action::ServeAndRefresh),
            ("inside refresh-ahead, loading",         Some(set()), None,    true,   570, Action::Serve),
            ("inside refresh-ahead, backing off",     Some(set()), backoff, false,  570, Action::Serve),
            ("stale, healthy",                        Some(set()), None,    false,  600, Action::ServeStaleAndRefresh),
            ("stale, healthy, near max_stale",        Some(set()), None,    false, 4199, Action::ServeStaleAndRefresh),
            ("stale while backing off",               Some(set()), backoff, false,  900, Action::ServeStale),
            ("stale with a load in flight",           Some(set()), None,    true,   900, Action::ServeStale),
            ("stale, backing off and loading",        Some(set()), backoff, true,   900, Action::ServeStale),
            ("past max_stale",                        Some(set()), None,    false, 4200, Action::WaitForLoad),
            ("past max_stale, loading",               Some(set()), None,    true,  5000, Action::WaitForLoad),
            ("past max_stale, backing off",           Some(set()), backoff, false, 5000, Action::Refuse(8 * SEC)),
            ("absent",                                None,        None,    false,    0, Action::WaitForLoad),
            ("absent, loading",                       None,        None,    true,     0, Action::WaitForLoad),
            ("absent, backing off",                   None,        backoff, false,    0, Action::Refuse(8 * SEC)),
            ("absent, backing off, loading",          None,        backoff, true,     0, Action::WaitForLoad),
        ];
        for &(case, set, backing_off, loading, now, expected) in rows {
            let action = decide(Situation {
                set,
                backing_off,
                loading,
                now: at(now),
                policy: &policy,
            });
            assert_eq!(action, expected, "{case}");
        }
    }

    #[test]
    fn only_usable_sets_are_served_and_only_stale_ones_count_as_stale() {
        let served = [
            Action::Serve,
            Action::ServeAndRefresh,
            Action::ServeStale,
            Action::ServeStaleAndRefresh,
        ];
        let stale: Vec<bool> = served.iter().map(|action| action.is_stale()).collect();
        assert_eq!(stale, [false, false, true, true]);
        let refreshes: Vec<bool> = served.iter().map(|action| action.refreshes()).collect();
        assert_eq!(refreshes, [false, true, false, true]);
        assert!(!Action::WaitForLoad.is_stale() && !Action::WaitForLoad.refreshes());
    }

    #[test]
    fn health_follows_the_set_and_the_backoff() {
        let times = set();
        let backoff = Some(8 * SEC);
        assert_eq!(
            KeyHealth::of(Some(times), None, at(10)),
            KeyHealth::Fresh {
                until: times.fresh_until
            }
        );
        let stale = KeyHealth::of(Some(times), backoff, at(600));
        assert_eq!(
            stale,
            KeyHealth::Stale {
                since: times.fresh_until,
                until: times.usable_until
            }
        );
        assert!(stale.is_ready());
        let gone = KeyHealth::of(Some(times), backoff, at(4200));
        assert_eq!(
            gone,
            KeyHealth::Unavailable {
                retry_after: backoff
            }
        );
        assert!(!gone.is_ready());
        assert_eq!(
            KeyHealth::of(None, None, at(0)),
            KeyHealth::Unavailable { retry_after: None }
        );
    }

    #[test]
    fn refresh_ahead_is_capped_at_half_the_ttl() {
        let policy = FreshnessPolicy::default().refresh_ahead(Duration::from_secs(3600));
        assert_eq!(refresh_at(set(), &policy), at(300));
        assert_eq!(refresh_at(set(), &FreshnessPolicy::default()), at(540));
    }
}
