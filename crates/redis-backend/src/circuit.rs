//! A circuit breaker: after repeated failures Redis is skipped for a cool-off, so a sick Redis
//! adds no latency per request.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Circuit {
    threshold: u32,
    cool_off: Duration,
    failures: AtomicU32,
    /// Calls are refused until this many milliseconds after `origin` (0: closed).
    open_until_ms: AtomicU64,
    origin: Instant,
}

impl Circuit {
    pub(crate) fn new(threshold: u32, cool_off: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_off,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether calls are refused right now.
    pub(crate) fn is_open(&self) -> bool {
        self.elapsed_ms() < self.open_until_ms.load(Ordering::Acquire)
    }

    pub(crate) fn succeeded(&self) {
        if self.failures.swap(0, Ordering::AcqRel) >= self.threshold {
            tracing::info!("redis circuit closed");
        }
    }

    pub(crate) fn failed(&self) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.threshold {
            let until = self
                .elapsed_ms()
                .saturating_add(u64::try_from(self.cool_off.as_millis()).unwrap_or(u64::MAX));
            let was = self.open_until_ms.swap(until, Ordering::AcqRel);
            if was <= self.elapsed_ms() {
                tracing::warn!(failures, cool_off = ?self.cool_off, "redis circuit opened");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_half_opens_after_the_cool_off() {
        let circuit = Circuit::new(3, Duration::from_secs(5));
        circuit.failed();
        circuit.failed();
        assert!(!circuit.is_open());
        circuit.failed();
        assert!(circuit.is_open());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!circuit.is_open());
        // Half open: one more failure opens it again at once.
        circuit.failed();
        assert!(circuit.is_open());
        tokio::time::advance(Duration::from_secs(6)).await;
        circuit.succeeded();
        circuit.failed();
        assert!(!circuit.is_open());
    }
}
