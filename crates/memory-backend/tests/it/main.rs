//! The integration tests of jwkstash-memory, one module per subject, in one binary.

mod conformance;
