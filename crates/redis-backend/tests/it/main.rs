//! The integration tests of jwkstash-redis, one module per subject, in one binary.

mod redis;
