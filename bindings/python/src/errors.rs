//! Rust errors as the Python exceptions of `jwkstash.exceptions`.
//!
//! The classes are defined in Python (attributes, docstrings, pickling come for free) and looked
//! up once per process.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use std::error::Error;

use crate::rust_api::{
    InvalidToken, KeysUnavailable, RedisBuildError, VerifierBuildError, VerifyError,
};

const MODULE: &str = "jwkstash.exceptions";

static INVALID_TOKEN: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static KEYS_UNAVAILABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CONFIGURATION_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static SIGNING_KEY_NOT_FOUND: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, MODULE, name)
}

/// `InvalidToken(message, code)`: the token is refused (answer 401).
pub(crate) fn invalid_token(py: Python<'_>, error: &InvalidToken) -> PyErr {
    match class(py, &INVALID_TOKEN, "InvalidToken") {
        Ok(class) => PyErr::from_type(class.clone(), (error.to_string(), error.code())),
        Err(import) => import,
    }
}

/// `KeysUnavailable(message, retry_after)`: no usable keys (answer 503).
pub(crate) fn keys_unavailable(py: Python<'_>, error: &KeysUnavailable) -> PyErr {
    let retry_after = error.retry_after().map(|after| after.as_secs_f64());
    match class(py, &KEYS_UNAVAILABLE, "KeysUnavailable") {
        Ok(class) => PyErr::from_type(class.clone(), (error.to_string(), retry_after)),
        Err(import) => import,
    }
}

/// The Python exception for a failed verification.
pub(crate) fn verify_error(py: Python<'_>, error: &VerifyError) -> PyErr {
    match error {
        VerifyError::InvalidToken(invalid) => invalid_token(py, invalid),
        VerifyError::KeysUnavailable(unavailable) => keys_unavailable(py, unavailable),
        // A kind of failure added to jwkstash after this binding: not the token's fault.
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// `ConfigurationError(message)`: the settings are refused.
pub(crate) fn configuration(py: Python<'_>, message: impl Into<String>) -> PyErr {
    let message: String = message.into();
    match class(py, &CONFIGURATION_ERROR, "ConfigurationError") {
        Ok(class) => PyErr::from_type(class.clone(), (message,)),
        Err(import) => import,
    }
}

/// What a refused verifier setting says to a Python caller: the Rust messages name builder
/// methods (`allow_http_loopback()`), these name `Verifier`'s keyword arguments.
pub(crate) fn verifier_settings(error: &VerifierBuildError) -> String {
    match error {
        VerifierBuildError::MissingAudience => "an audience is required: pass audience= (a \
             string or a list of them), or any_audience=True to accept tokens for any audience"
            .into(),
        VerifierBuildError::InsecureUrl(url) => format!(
            "plain http refused for {url}: use https, or pass allow_http_loopback=True for a \
             provider on this machine (it admits the loopback hosts localhost, 127.0.0.0/8 and \
             ::1 only)"
        ),
        other => with_causes(other),
    }
}

/// What a refused Redis setting says to a Python caller, in `Verifier`'s keyword arguments.
pub(crate) fn redis_settings(error: &RedisBuildError) -> String {
    match error {
        RedisBuildError::MissingSecret => "redis_url needs hmac_secret= (at least 16 bytes, \
             the same on every instance of the fleet, Python or Rust), or \
             insecure_unauthenticated_redis=True to opt out: without it anyone who can write to \
             Redis chooses the keys the whole fleet trusts"
            .into(),
        RedisBuildError::WeakSecret => "hmac_secret must be at least 16 bytes".into(),
        RedisBuildError::InvalidPrefix => {
            "redis_prefix must be non-empty and made of A-Za-z0-9_-.:".into()
        }
        RedisBuildError::InvalidUrl => "redis_url is not a valid redis:// or rediss:// URL".into(),
        other => format!("redis: {}", with_causes(other)),
    }
}

/// An error's message followed by each cause's.
fn with_causes(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        message.push_str(": ");
        message.push_str(&error.to_string());
        cause = error.source();
    }
    message
}

/// `SigningKeyNotFound(message, code)`: no key of the set signs tokens like this one.
pub(crate) fn signing_key_not_found(py: Python<'_>, message: String, code: &str) -> PyErr {
    match class(py, &SIGNING_KEY_NOT_FOUND, "SigningKeyNotFound") {
        Ok(class) => PyErr::from_type(class.clone(), (message, code.to_owned())),
        Err(import) => import,
    }
}

/// The runtime could not be started (threads or I/O driver refused by the system).
pub(crate) fn runtime(error: &std::io::Error) -> PyErr {
    PyRuntimeError::new_err(format!("the jwkstash runtime could not start: {error}"))
}
