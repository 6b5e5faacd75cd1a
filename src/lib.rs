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
//! ## Where things are
//!
//! The names a service types every day are at the root: [`Verifier`] (and its builder),
//! [`VerifyError`] with [`InvalidToken`] (401) and [`KeysUnavailable`] (503), [`Issuers`] for
//! many issuers, [`FreshnessPolicy`], the tiers ([`MemoryCache`] by default, `RedisCache` and
//! `FileCache` by feature), one [`BuildError`] for every builder, and with feature `tower` /
//! `axum` the `JwtLayer` middleware and the `Claims<T>` extractor. The rest lives in modules:
//!
//! | module | what it holds |
//! |---|---|
//! | [`source`] | where key sets come from: [`KeySource`](source::KeySource), HTTP, discovery, static, pinned, failover |
//! | [`tier`] | the cache stack: [`Cache`](tier::Cache), [`Tiered`](tier::Tiered), leases, invalidations, the directory, single-flight, the envelope of byte-storing tiers |
//! | [`keys`] | parsed key sets: [`KeySet`](keys::KeySet), [`VerifyingKey`](keys::VerifyingKey), algorithms, why a key was skipped |
//! | [`events`] | what happens to a verifier's keys: [`KeyEvent`](events::KeyEvent), [`KeyHealth`](events::KeyHealth), [`Stats`](events::Stats) |
//! | [`issuers`] | many issuers: templates, resolvers, their bounds |
//! | [`clock`] | the injected clock |
//! | [`limits`] | every default and bound, in one place |
//! | `testkit` | (feature `testkit`) an embedded identity provider, test keys, the conformance suites |
//!
//! ## Features
//!
//! `memory` (default) is the in-process moka tier; `redis` adds `RedisCache`, the shared tier
//! of a fleet; `file` adds `FileCache` and `VerifierBuilder::snapshot_dir`, the snapshot tier
//! that keeps the last set across restarts; `tower` and `axum` add the `JwtLayer` middleware and
//! the `Claims<T>` extractor; `metrics` feeds the `metrics` facade; `cli` builds the `jwkstash`
//! command; `testkit` adds an embedded identity provider and test keys.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod build_error;

pub use build_error::BuildError;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use jwkstash_file::FileCache;
/// What [`VerifierBuilder::build`] refuses, inside [`BuildError::Verifier`]: match its
/// variants (`MissingAudience`, `InsecureUrl`, `InvalidSetting`, ...) to tell them apart.
pub use jwkstash_jwks::BuildError as VerifierBuildError;
pub use jwkstash_jwks::{
    FreshnessPolicy, InvalidToken, Issuers, KeysUnavailable, RefreshError, Verifier,
    VerifierBuilder, VerifyError,
};
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use jwkstash_memory::MemoryCache;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use jwkstash_redis::RedisCache;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use jwkstash_tower::{Claims, JwtLayer};

pub mod source {
    //! Where key sets come from: any [`KeySource`], an HTTP JWKS URL, OpenID Connect discovery, a
    //! JWKS held by the application, pinned keys, a failover of two sources.
    pub use jwkstash_core::{FetchError, Fetched, KeySource, Validators};
    pub use jwkstash_jwks::{
        Discovery, DiscoverySource, DiscoverySourceBuilder, Failover, HttpKeySource,
        HttpKeySourceBuilder, StaticKeySource, WithPinnedKeys,
    };
}

pub mod tier {
    //! The cache stack: the [`Cache`] trait every tier implements, the [`Tiered`] stack (near over
    //! shared over snapshot), what a fleet's shared tier adds ([`Lease`], [`Invalidations`],
    //! [`Directory`]), single-flight, the [`envelope`] of tiers that store bytes, and the
    //! builders of the tiers.
    pub use jwkstash_core::envelope;
    pub use jwkstash_core::{
        BoxError, Cache, CacheError, CacheErrorKind, CacheValue, DecodeError, Directory, Entry,
        FlightError, Invalidation, Invalidations, Lease, LeaseToken, SharedTier, SingleFlight,
        Tier, Tiered, get_or_load,
    };
    /// What [`FileCacheBuilder::build`] refuses, inside [`BuildError::File`](crate::BuildError::File).
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub use jwkstash_file::BuildError as FileBuildError;
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub use jwkstash_file::FileCacheBuilder;
    pub use jwkstash_jwks::{FORCED_REFRESH_SLOT, KeySetTier, SharedKeySetTier};
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    pub use jwkstash_memory::MemoryCacheBuilder;
    /// What [`RedisCacheBuilder::build`] refuses, inside [`BuildError::Redis`](crate::BuildError::Redis).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use jwkstash_redis::BuildError as RedisBuildError;
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use jwkstash_redis::{RedisCacheBuilder, fred};
}

pub mod keys {
    //! Parsed key sets: the keys a verifier checks signatures with, the algorithms it accepts, and
    //! why a key of a document was skipped.
    pub use jwkstash_jwks::{
        Algorithm, KeyKind, KeySet, KeySetError, SkipReason, SkippedKey, UnsupportedAlgorithm,
        VerifyingKey,
    };
}

pub mod events {
    //! What happens to a verifier's keys, for alerts, readiness probes and dashboards.
    pub use jwkstash_jwks::{KeyEvent, KeyEvents, KeyHealth, Refreshed, Stats};
}

pub mod issuers {
    //! Many issuers in one process: the [`Issuers`] registry, issuer templates for multi-tenant
    //! providers, and resolvers of issuers first seen at run time.
    pub use jwkstash_jwks::{IssuerResolver, IssuerTemplate, Issuers};
}

pub mod clock {
    //! The clock every freshness and expiry decision reads: the system's, or one a test moves.
    pub use jwkstash_core::{
        Clock, ManualClock, SharedClock, SystemClock, TokioClock, from_unix_millis, unix_millis,
    };
}

pub mod limits {
    //! Every default and bound, in one place (each is documented where it applies).
    pub use jwkstash_core::MAX_ABOUT_BYTES;
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub use jwkstash_file::DEFAULT_MAX_VALUE_BYTES as DEFAULT_MAX_SNAPSHOT_BYTES;
    pub use jwkstash_jwks::{
        DEFAULT_ALGORITHMS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DISCOVERY_TTL, DEFAULT_FETCH_TIMEOUT,
        DEFAULT_LEASE_TTL, DEFAULT_LEEWAY, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_REFUSED,
        DEFAULT_MAX_RESOLVED, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_REFUSED_TTL, DEFAULT_RESOLVED_IDLE,
        DEFAULT_RESOLVED_METRICS_LABEL, DEFAULT_TOTAL_TIMEOUT, EVENT_CAPACITY,
        MAX_CERTIFICATE_BYTES, MAX_ISSUER_BYTES, MAX_KEYS, MAX_KID_BYTES, MAX_RSA_BITS,
        MAX_TEMPLATE_VALUE_BYTES, MIN_RSA_BITS,
    };
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use jwkstash_redis::{
        DEFAULT_CALL_TIMEOUT as DEFAULT_REDIS_CALL_TIMEOUT,
        DEFAULT_MAX_VALUE_BYTES as DEFAULT_MAX_REDIS_VALUE_BYTES,
    };
}

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower {
    //! The tower middleware and its parts (features `tower`, `axum`).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub use jwkstash_tower::MissingClaims;
    pub use jwkstash_tower::{Authenticate, BearerError, Claims, Jwt, JwtLayer, bearer_token};
}

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit {
    //! Embedded identity provider, test keys and the conformance suites of tiers (feature
    //! `testkit`).
    pub use jwkstash_core::testkit as tiers;
    pub use jwkstash_jwks::testkit::*;
}

/// The README's examples, compiled as doctests (they use every feature).
#[cfg(all(doctest, feature = "redis", feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
