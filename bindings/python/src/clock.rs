//! `jwkstash.testing.ManualClock`: a clock that moves only when told, for tests of TTLs,
//! backoff and `max_stale` without real sleeps (the Rust `ManualClock`, shared by the
//! verifiers and the Redis tier given it).

use pyo3::prelude::*;
use std::time::{Duration, SystemTime};

use crate::errors;
use crate::rust_api::ManualClock;

/// A clock for tests: reads `start` (seconds since the epoch; default: now) until `advance`.
#[pyclass(name = "ManualClock", module = "jwkstash._jwkstash", frozen)]
pub(crate) struct PyManualClock {
    pub(crate) clock: ManualClock,
}

#[pymethods]
impl PyManualClock {
    /// A clock reading `start` (seconds since the epoch), or the system's time now.
    #[new]
    #[pyo3(signature = (start = None))]
    fn new(py: Python<'_>, start: Option<f64>) -> PyResult<Self> {
        let start = match start {
            None => SystemTime::now(),
            Some(seconds) => SystemTime::UNIX_EPOCH + duration(py, seconds)?,
        };
        Ok(Self {
            clock: ManualClock::new(start),
        })
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        self.clock.advance(duration(py, seconds)?);
        Ok(())
    }

    /// The time the clock reads, in seconds since the epoch.
    fn now(&self) -> f64 {
        use jwkstash::clock::Clock;
        self.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64())
    }
}

fn duration(py: Python<'_>, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| errors::configuration(py, format!("{seconds} is not a number of seconds")))
}
