//! `jwkstash._jwkstash`, the extension module of the `jwkstash` Python package: the Rust
//! [`Verifier`](jwkstash::Verifier) with its cache stack (in-process tier, optional Redis tier
//! shared with Rust services), verifying without the GIL on a tokio runtime the module owns,
//! one per process (a forked child starts its own).
//!
//! The Python package (`python/jwkstash`) adds the exceptions, the PyJWT-compatible
//! `get_signing_key_from_jwt`, and the Django and DRF integration. Built with maturin:
//! `maturin build` in `bindings/python` (see the README's "Python and Django").

mod clock;
mod convert;
mod errors;
mod jwk;
mod runtime;
mod rust_api;
mod verifier;

/// The extension module.
#[pyo3::pymodule]
mod _jwkstash {
    #[pymodule_export]
    use super::clock::PyManualClock;
    #[pymodule_export]
    use super::verifier::PyVerifier;

    use pyo3::prelude::*;

    /// The version of the Rust library inside.
    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", env!("CARGO_PKG_VERSION"))
    }

    /// The pid of the process the module's runtime was started in (a forked child holds its
    /// parent's until it uses a verifier), or None before any verifier was built.
    #[pyfunction]
    fn _runtime_pid() -> Option<u32> {
        super::runtime::held_pid()
    }
}
