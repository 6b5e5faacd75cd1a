//! `jwkstash.testing.ManualClock`: a clock that moves only when told, for tests of TTLs,
//! backoff and `max_stale` without real sleeps (the Rust `ManualClock`, shared by the
//! verifiers and the Redis tier given it).

use pyo3::prelude::*;
use std::time::SystemTime;

use crate::convert::{epoch, seconds};
use crate::rust_api::{Clock, ManualClock};

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
            Some(start) => SystemTime::UNIX_EPOCH + seconds(py, "start", start)?,
        };
        Ok(Self {
            clock: ManualClock::new(start),
        })
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, py: Python<'_>, by: f64) -> PyResult<()> {
        self.clock.advance(seconds(py, "advance", by)?);
        Ok(())
    }

    /// The time the clock reads, in seconds since the epoch.
    fn now(&self) -> f64 {
        epoch(self.clock.now())
    }
}
