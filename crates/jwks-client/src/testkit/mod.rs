//! Test keys and an embedded identity provider (feature `testkit`), for examples, tests and
//! benchmarks. Not for production: keys are generated in memory and served over plain HTTP on
//! loopback.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod idp;
mod keys;

pub use idp::{Behaviour, Idp, IdpBuilder};
pub use keys::{TestKey, b64, b64_decode, jwks};

mod source;
pub use source::StaticSource;

/// Waits until `condition` holds, checking every millisecond of tokio time (so that on a paused
/// clock the runtime can advance to the work it waits for). Panics, naming `what`, if it does
/// not hold within 10,000 checks: a background refresh that never lands is a failure, not a hang.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}
