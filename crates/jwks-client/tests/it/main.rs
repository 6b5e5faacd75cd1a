//! The integration tests of jwkstash-jwks, one module per subject, in one binary: the crate and
//! its dependencies (aws-lc, reqwest, axum) are linked once, not once per file.
//!
//! Tests here share one process and run on parallel threads, so none may install anything
//! process-wide. The ones that must live beside this binary, each in a process of its own:
//! `tenant_memory.rs`, `memory_bounds.rs` and `fleet_scale.rs` (a counting global allocator
//! that measures the whole binary's heap), `metrics_cardinality.rs` (a global metrics recorder,
//! which would record every other test's verifiers) and `logs.rs` (a global tracing subscriber
//! at TRACE, whose tests count the lines of their own verifiers).

mod common;

mod control;
mod discovery;
mod edges;
mod errors;
mod es512;
mod events;
mod fully_specified_ed25519;
mod hostile_jwks;
mod hostile_tokens;
mod http_source;
mod issuers;
mod key_sets;
#[cfg(feature = "metrics")]
mod observability;
mod outages;
mod policy;
mod properties;
mod reused_kid;
#[cfg(feature = "file")]
mod snapshot;
mod sources;
mod strict_jose;
mod tenants;
mod tls;
mod upstream_calls;
mod verification;
mod verified_tokens;
mod wycheproof;
mod x5t;
