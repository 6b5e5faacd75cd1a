//! Rust errors as the Python exceptions of `jwkstash.exceptions`.
//!
//! The classes are defined in Python (attributes, docstrings, pickling come for free) and looked
//! up once per process.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::rust_api::{InvalidToken, KeysUnavailable, VerifyError};

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
