//! The JWKS client of jwkstash: [`HttpKeySource`] fetches a provider's key set, [`KeySet`]
//! parses it once, and [`Verifier`] checks tokens against it through a cache stack, calling the
//! provider as rarely as its [`FreshnessPolicy`] allows.
//!
//! ```no_run
//! use serde::Deserialize;
//! use jwkstash_jwks::Verifier;
//!
//! #[derive(Deserialize)]
//! struct Claims {
//!     sub: String,
//! }
//!
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .jwks_url("https://idp.example.com/.well-known/jwks.json")
//!     .issuer("https://idp.example.com/")
//!     .audience("my-api")
//!     .build()?;
//! let claims: Claims = verifier.verify(token).await?;
//! println!("hello {}", claims.sub);
//! # Ok(()) }
//! ```

mod error;
mod issuers;
mod jose;
mod source;
mod stats;
mod store;
mod verify;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::BuildError;
pub use issuers::{
    DEFAULT_MAX_REFUSED, DEFAULT_MAX_RESOLVED, DEFAULT_REFUSED_TTL, DEFAULT_RESOLVED_IDLE,
    DEFAULT_RESOLVED_METRICS_LABEL, IssuerResolver, Issuers, MAX_ISSUER_BYTES,
};
pub use jose::alg::{Algorithm, DEFAULT_ALGORITHMS, KeyKind, UnsupportedAlgorithm};
pub use jose::certificate::MAX_CERTIFICATE_BYTES;
pub use jose::error::{InvalidToken, KeySetError, SkipReason, SkippedKey};
pub use jose::keyset::{KeySet, MAX_KEYS, MAX_KID_BYTES, MAX_RSA_BITS, MIN_RSA_BITS, VerifyingKey};
pub use jose::template::{IssuerTemplate, MAX_TEMPLATE_VALUE_BYTES};
pub use source::discovery::{
    DEFAULT_DISCOVERY_TTL, Discovery, DiscoverySource, DiscoverySourceBuilder,
};
pub use source::failover::Failover;
pub use source::fetcher::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOTAL_TIMEOUT};
pub use source::http::{HttpKeySource, HttpKeySourceBuilder};
pub use source::pinned::WithPinnedKeys;
pub use source::static_keys::StaticKeySource;
pub use stats::Stats;
pub use store::error::{KeysUnavailable, RefreshError};
pub use store::events::{EVENT_CAPACITY, KeyEvent, KeyEvents};
pub use store::fleet::FORCED_REFRESH_SLOT;
pub use store::freshness::KeyHealth;
pub use store::policy::{DEFAULT_FETCH_TIMEOUT, FreshnessPolicy};
pub use store::tiers::{KeySetTier, SharedKeySetTier};
pub use verify::builder::VerifierBuilder;
pub use verify::error::VerifyError;
pub use verify::verifier::{
    DEFAULT_LEASE_TTL, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, Refreshed, Verifier,
};
