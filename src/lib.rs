//! # jwkstash
//!
//! Validate JWTs against an identity provider's JSON Web Key Set while calling the provider as
//! rarely as correctness allows: parsed keys in an in-process tier, refresh ahead of expiry,
//! the last good set kept through outages for a bounded time, and at most one refetch per
//! cooldown for unknown `kid`s.
//!
//! ```no_run
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Claims {
//!     sub: String,
//! }
//!
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = jwkstash::Verifier::builder()
//!     .jwks_url("https://idp.example.com/.well-known/jwks.json")
//!     .issuer("https://idp.example.com/")
//!     .audience("my-api")
//!     .build()?;
//! match verifier.verify::<Claims>(token).await {
//!     Ok(claims) => println!("hello {}", claims.sub),
//!     Err(error) if error.is_invalid_token() => { /* answer 401 */ }
//!     Err(_) => { /* keys unavailable: answer 503 */ }
//! }
//! # Ok(()) }
//! ```
//!
//! ## Crates and features
//!
//! This crate re-exports the workspace:
//! [`jwkstash_core`] (the [`Cache`] and [`KeySource`] traits, [`Tiered`], single-flight, clocks),
//! [`jwkstash_jwks`] ([`Verifier`], [`HttpKeySource`], [`KeySet`]) and, with the default
//! feature `memory`, [`MemoryCache`] (moka). Feature `redis` adds `RedisCache`, the shared tier
//! of a fleet; `file` adds `FileCache` and `VerifierBuilder::snapshot_dir`, the snapshot tier that
//! keeps the last set across restarts; `tower` and `axum` add the `JwtLayer` middleware and the `Claims<T>` extractor;
//! `metrics` feeds the `metrics` facade; `cli` builds the `jwkstash` command; `testkit` adds an
//! embedded identity provider and test keys.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use jwkstash_core::{
    Cache, CacheError, CacheErrorKind, CacheValue, Clock, Entry, FetchError, Fetched, Invalidation,
    Invalidations, KeySource, Lease, ManualClock, SharedClock, SharedTier, SingleFlight,
    SystemClock, Tiered, TokioClock, Validators,
};
pub use jwkstash_jwks::{
    Algorithm, BuildError, DEFAULT_ALGORITHMS, DEFAULT_DISCOVERY_TTL, DEFAULT_FETCH_TIMEOUT,
    DEFAULT_LEASE_TTL, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, Discovery, DiscoverySource,
    DiscoverySourceBuilder, EVENT_CAPACITY, Failover, FreshnessPolicy, HttpKeySource,
    HttpKeySourceBuilder, InvalidToken, IssuerResolver, IssuerTemplate, Issuers, KeyEvent,
    KeyEvents, KeyHealth, KeyKind, KeySet, KeySetCache, KeySetError, KeysUnavailable,
    MAX_CERTIFICATE_BYTES, RefreshError, Refreshed, SharedKeySetTier, SkipReason, SkippedKey,
    StaticKeySource, Stats, Verifier, VerifierBuilder, VerifyError, VerifyingKey, WithPinnedKeys,
};
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use jwkstash_memory::{MemoryCache, MemoryCacheBuilder};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use jwkstash_redis::{RedisCache, RedisCacheBuilder};

#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use jwkstash_file::{FileCache, FileCacheBuilder};

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use jwkstash_tower::MissingClaims;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use jwkstash_tower::{Authenticate, BearerError, Claims, Jwt, JwtLayer, bearer_token};

/// Embedded identity provider and test keys (feature `testkit`).
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub use jwkstash_jwks::testkit;

/// The README's examples, compiled as doctests (they use every feature).
#[cfg(all(doctest, feature = "redis", feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use jwkstash_core;
#[cfg(feature = "file")]
pub use jwkstash_file;
pub use jwkstash_jwks;
#[cfg(feature = "memory")]
pub use jwkstash_memory;
#[cfg(feature = "redis")]
pub use jwkstash_redis;
#[cfg(feature = "tower")]
pub use jwkstash_tower;
