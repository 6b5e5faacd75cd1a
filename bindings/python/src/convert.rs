//! Conversions between Python values and what the Rust verifier takes and gives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};
use serde_json::Value;

use crate::errors;
use crate::rust_api::{InvalidToken, KeyHealth, Stats};

/// A JSON value as Python objects (`dict`, `list`, `str`, `int`, `float`, `bool`, `None`).
/// Claims come from the verifier, whose JSON reader bounds nesting at 128 levels, so the
/// recursion is bounded too.
pub(crate) fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                int.into_pyobject(py)?.into_any()
            } else if let Some(int) = number.as_u64() {
                int.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, number.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(text) => PyString::new(py, text).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(members) => {
            let dict = PyDict::new(py);
            for (name, member) in members {
                dict.set_item(name, json_to_py(py, member)?)?;
            }
            dict.into_any()
        }
    })
}

/// A token given as `str` or `bytes` (DRF's `get_authorization_header` gives bytes), borrowed.
pub(crate) fn token_text<'a>(py: Python<'_>, token: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    if let Ok(text) = token.cast::<PyString>() {
        return text.to_str();
    }
    if let Ok(bytes) = token.cast::<PyBytes>() {
        return std::str::from_utf8(bytes.as_bytes()).map_err(|_| {
            errors::invalid_token(py, &InvalidToken::Malformed("the token is not UTF-8"))
        });
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "a token is a str or bytes",
    ))
}

/// A duration given in seconds (int or float), refused when negative or not finite.
pub(crate) fn seconds(py: Python<'_>, name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        errors::configuration(
            py,
            format!("{name} must be a finite, non-negative number of seconds, not {value}"),
        )
    })
}

/// Seconds since the Unix epoch, as `time.time()` gives them.
pub(crate) fn epoch(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// [`KeyHealth`] as a dict: `state` (`fresh`, `stale`, `unavailable`), `ready`, and the times
/// (Unix seconds) or `retry_after` (seconds) of the state.
pub(crate) fn health<'py>(py: Python<'py>, health: &KeyHealth) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("ready", health.is_ready())?;
    match health {
        KeyHealth::Fresh { until } => {
            dict.set_item("state", "fresh")?;
            dict.set_item("until", epoch(*until))?;
        }
        KeyHealth::Stale { since, until } => {
            dict.set_item("state", "stale")?;
            dict.set_item("since", epoch(*since))?;
            dict.set_item("until", epoch(*until))?;
        }
        KeyHealth::Unavailable { retry_after } => {
            dict.set_item("state", "unavailable")?;
            dict.set_item("retry_after", retry_after.map(|after| after.as_secs_f64()))?;
        }
        // A state added to jwkstash after this binding.
        _ => dict.set_item("state", "unknown")?,
    }
    Ok(dict)
}

/// [`Stats`] as a dict of counters (names as in Rust), plus `hit_ratio`.
pub(crate) fn stats<'py>(py: Python<'py>, stats: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let counters = [
        ("verified", stats.verified),
        ("rejected", stats.rejected),
        ("unavailable", stats.unavailable),
        ("fetches", stats.fetches),
        ("fetch_failures", stats.fetch_failures),
        ("fetch_successes", stats.fetch_successes),
        ("fetches_cold", stats.fetches_cold),
        ("fetches_refresh_ahead", stats.fetches_refresh_ahead),
        ("fetches_stale", stats.fetches_stale),
        ("fetches_unknown_kid", stats.fetches_unknown_kid),
        ("fetches_reused_kid", stats.fetches_reused_kid),
        ("fetches_forced", stats.fetches_forced),
        ("waited_for_fetch", stats.waited_for_fetch),
        ("unknown_kid_refetches", stats.unknown_kid_refetches),
        ("unknown_kid_suppressed", stats.unknown_kid_suppressed),
        ("stale_served", stats.stale_served),
        ("unknown_kid_timeouts", stats.unknown_kid_timeouts),
        ("signature_checks", stats.signature_checks),
        ("verified_token_hits", stats.verified_token_hits),
        ("pinned_hits", stats.pinned_hits),
        ("near_hits", stats.near_hits),
        ("shared_hits", stats.shared_hits),
        ("snapshot_hits", stats.snapshot_hits),
        ("cache_misses", stats.cache_misses),
        ("invalidations_heard", stats.invalidations_heard),
    ];
    for (name, value) in counters {
        dict.set_item(name, value)?;
    }
    dict.set_item("hit_ratio", stats.hit_ratio())?;
    Ok(dict)
}
