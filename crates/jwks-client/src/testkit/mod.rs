//! Test keys and an embedded identity provider (feature `testkit`), for examples, tests and
//! benchmarks. Not for production: keys are generated in memory and served over plain HTTP on
//! loopback.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod idp;
mod keys;

pub use idp::{Behaviour, Idp, IdpBuilder};
pub use keys::{TestKey, b64, jwks};

mod source;
pub use source::StaticSource;
