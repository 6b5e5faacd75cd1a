//! The shared Redis tier of jwkstash, over [fred](https://docs.rs/fred).
//!
//! [`RedisCache`] implements [`Cache`](jwkstash_core::Cache) for any
//! [`CacheValue`](jwkstash_core::CacheValue), plus [`Lease`](jwkstash_core::Lease) and
//! [`Invalidations`](jwkstash_core::Invalidations), so a fleet of verifiers shares one copy of
//! each key set and fetches it once for all.
//!
//! * Keys are `PREFIX:{KEY}:entry` (and `:lease`, `:SLOT`): a non-empty prefix and the cache key
//!   that jwkstash builds from hashes, with a hash tag so that an entry and its lease share a
//!   Cluster slot. Nothing from a token reaches a key raw.
//! * Values are a versioned envelope, optionally authenticated with HMAC-SHA256 under a secret
//!   that never leaves the service. Garbage, wrong types, unknown versions, bad tags, implausible
//!   times and oversize values read as a miss (logged once per kind) and are never trusted.
//! * Writes are write-if-newer (a Lua script): a slow writer never rolls a newer set back.
//! * Every call has a deadline (default 250 ms); after repeated failures a circuit opens and
//!   Redis is skipped for a cool-off. A Redis that is down at start is connected to later.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jwkstash_redis::BuildError> {
//! use jwkstash_redis::RedisCache;
//! let redis = RedisCache::builder()
//!     .url("redis://:password@127.0.0.1:6379")
//!     .prefix("my-service")
//!     .hmac_secret(b"a secret of the service, not of Redis".to_vec())
//!     .build()
//!     .await?;
//! # let _ = redis;
//! # Ok(()) }
//! ```

// Each module imports only modules listed above it in this order (no import circles):
// circuit, scripts  leaves: the circuit breaker and the Lua scripts
// client            the fred client and the call rules: key naming, deadline, circuit, EVALSHA
// cache             RedisCache and its Cache impl: envelope, write-if-newer, refusals
// coordination      Lease and Directory, through the client
// pubsub            Invalidations, the subscriber task, message parsing
// builder           RedisCacheBuilder: assembles the above and starts the subscriber
// testkit           (feature) a real redis-server per test; imports none of the above
mod builder;
mod cache;
mod circuit;
mod client;
mod coordination;
mod pubsub;
mod scripts;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use builder::{BuildError, DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_VALUE_BYTES, RedisCacheBuilder};
pub use cache::RedisCache;
pub use fred;
