//! The integration tests of jwkstash-core, one module per subject, in one binary.

mod tiered;
