//! Consecutive failures of a key source and the backoff they impose.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use jwkstash_core::{FetchError, unix_millis};

use crate::store::error::RefreshError;
use crate::store::policy::FreshnessPolicy;

/// Consecutive failures of the source and the backoff they impose.
#[derive(Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    /// No fetch before this instant (ms since the epoch; 0: none pending).
    retry_at_ms: AtomicU64,
    last_error: Mutex<Option<Arc<RefreshError>>>,
}

impl Health {
    /// How long until the next fetch may be tried, if the source is backing off.
    pub(crate) fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        let now = unix_millis(now);
        (now < retry_at).then(|| Duration::from_millis(retry_at - now))
    }

    pub(crate) fn failed(
        &self,
        now: SystemTime,
        policy: &FreshnessPolicy,
        error: Arc<RefreshError>,
    ) -> Duration {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        // Full backoff scaled into [80 %, 100 %] so a fleet does not retry in lockstep.
        let delay = policy
            .backoff(failures)
            .mul_f64(0.8 + 0.2 * fastrand::f64());
        let retry_at =
            unix_millis(now).saturating_add(delay.as_millis().try_into().unwrap_or(u64::MAX));
        self.retry_at_ms.store(retry_at, Ordering::Release);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
        delay
    }

    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures.load(Ordering::Acquire)
    }

    pub(crate) fn succeeded(&self) {
        self.failures.store(0, Ordering::Release);
        self.retry_at_ms.store(0, Ordering::Release);
    }

    pub(crate) fn last_error(&self) -> Arc<RefreshError> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| {
                Arc::new(RefreshError::Fetch(FetchError::Other(
                    "no fetch yet".into(),
                )))
            })
    }
}
