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

// The paths the files had before they moved into their rooms; removed as the rooms settle.
use jose::{alg, certificate, claims, json, keyset, template, token};
use source::{discovery, fetcher, http, sources};
use store::backoff as health;
use store::{events, fleet, freshness, kid_query, listener, policy};
use verify::{builder, verified, verifier};

#[cfg(feature = "testkit")]
pub mod testkit;

pub use alg::{Algorithm, DEFAULT_ALGORITHMS, KeyKind, UnsupportedAlgorithm};
pub use builder::VerifierBuilder;
pub use certificate::MAX_CERTIFICATE_BYTES;
pub use discovery::{DEFAULT_DISCOVERY_TTL, Discovery, DiscoverySource, DiscoverySourceBuilder};
pub use error::{
    BuildError, InvalidToken, KeySetError, KeysUnavailable, RefreshError, VerifyError,
};
pub use events::{EVENT_CAPACITY, KeyEvent, KeyEvents};
pub use fetcher::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOTAL_TIMEOUT};
pub use fleet::FORCED_REFRESH_SLOT;
pub use freshness::KeyHealth;
pub use http::{HttpKeySource, HttpKeySourceBuilder};
pub use issuers::{
    DEFAULT_MAX_REFUSED, DEFAULT_MAX_RESOLVED, DEFAULT_REFUSED_TTL, DEFAULT_RESOLVED_IDLE,
    DEFAULT_RESOLVED_METRICS_LABEL, IssuerResolver, Issuers, MAX_ISSUER_BYTES,
};
pub use keyset::{
    KeySet, MAX_KEYS, MAX_KID_BYTES, MAX_RSA_BITS, MIN_RSA_BITS, SkipReason, SkippedKey,
    VerifyingKey,
};
pub use policy::{DEFAULT_FETCH_TIMEOUT, FreshnessPolicy};
pub use sources::{Failover, StaticKeySource, WithPinnedKeys};
pub use stats::Stats;
pub use template::{IssuerTemplate, MAX_TEMPLATE_VALUE_BYTES};
pub use verifier::{
    DEFAULT_LEASE_TTL, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, KeySetCache, Refreshed,
    SharedKeySetTier, Verifier,
};
