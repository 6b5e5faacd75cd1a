//! The hot path: the verifier, its builder (the one place that puts every room together), and
//! the verified-token cache.

pub(crate) mod builder;
pub(crate) mod error;
pub(crate) mod verified;
pub(crate) mod verifier;
