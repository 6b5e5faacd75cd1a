//! The integration tests of jwkstash-tower, one module per subject, in one binary.

mod grpc;
#[cfg(feature = "axum")]
mod middleware;
