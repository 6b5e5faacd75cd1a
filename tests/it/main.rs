//! The integration tests of the jwkstash facade and its command, one module per subject, in
//! one binary (each module compiled with the features it needs).
//!
//! Tests here share one process and run on parallel threads. Beside this binary, each in a
//! binary of its own: `fleet_processes.rs` and `snapshot_processes.rs`, whose binaries run
//! themselves again as the OS processes they SIGKILL (with `tests/common/process.rs`).

#[cfg(all(feature = "cli", feature = "testkit"))]
mod cli;
#[cfg(all(feature = "cli", feature = "redis", feature = "testkit"))]
mod cli_fleet;
#[cfg(all(feature = "redis", feature = "testkit"))]
mod fleet;
#[cfg(all(feature = "redis", feature = "testkit"))]
mod hostile_redis;
#[cfg(all(feature = "redis", feature = "file", feature = "testkit"))]
mod layers;
mod readme;
