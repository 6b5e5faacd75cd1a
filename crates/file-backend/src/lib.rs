//! The snapshot tier of jwkstash: [`FileCache`], a [`Cache`](jwkstash_core::Cache) over a
//! directory that keeps the last verified key set across restarts.
//!
//! A process that starts while the identity provider is down has no keys; with a snapshot it
//! verifies tokens with the set it (or its fleet) last fetched, within the verifier's
//! `max_stale`, and refreshes in the background once the provider answers.
//!
//! * **Format**: the raw JWKS and its times (`fetched_at`, `fresh_until`, `usable_until`, the
//!   etag) in [`jwkstash_core::envelope`], the Redis tier's envelope: versioned, with an
//!   HMAC-SHA256 when a secret is set, and the cache key inside the authenticated bytes (a file
//!   copied from another issuer's snapshot is refused). Parsed keys are never stored.
//! * **Writes** are atomic: a temporary file created `0600`, written and fsynced, renamed over
//!   the entry, then the directory fsynced. Writers of one directory (threads or processes)
//!   take turns under an advisory lock, and an entry is never replaced by one fetched earlier.
//! * **Reads** are bounded ([`FileCacheBuilder::max_value_bytes`]) and checked: a corrupt,
//!   truncated, foreign, tampered, future or expired entry is a miss, counted by kind
//!   ([`FileCache::refusals`]) and logged at warn once per kind. Without a secret, a file that
//!   another user owns or may write is refused too.
//!
//! ```no_run
//! # fn demo() -> Result<(), jwkstash_file::BuildError> {
//! let snapshots = jwkstash_file::FileCache::builder("/var/lib/my-api/jwks")
//!     .hmac_secret(std::env::var("JWKSTASH_HMAC_SECRET").unwrap_or_default())
//!     .build()?;
//! # let _ = snapshots; Ok(()) }
//! ```

mod builder;
mod cache;
mod files;

pub use builder::{BuildError, DEFAULT_MAX_VALUE_BYTES, FileCacheBuilder};
pub use cache::FileCache;
