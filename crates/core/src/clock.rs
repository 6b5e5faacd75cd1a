use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The source of "now" for every freshness and expiry decision.
///
/// Injected so that time-based behaviour (TTL, cooldown, backoff, `max_stale`, token expiry) is
/// tested without real sleeps: [`TokioClock`] follows tokio's paused clock, [`ManualClock`]
/// moves only when told.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// A shared, type-erased clock.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall-clock time that advances with tokio's clock, so `tokio::time::pause` and `advance`
/// move it too. Created from the system time at construction.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin_wall: SystemTime,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that starts at the current system time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock that reads `start` now and advances with tokio's clock.
    pub fn starting_at(start: SystemTime) -> Self {
        Self {
            origin_wall: start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.origin_wall + self.origin.elapsed()
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance) or
/// [`set`](ManualClock::set) is called. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `at` (which may be in the past).
    pub fn set(&self, at: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Default for ManualClock {
    /// A clock reading 2030-01-01T00:00:00Z, a whole number of milliseconds since the epoch.
    fn default() -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
