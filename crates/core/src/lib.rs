//! Core traits of jwkstash: the [`Cache`] abstraction that every tier implements, the
//! [`KeySource`] abstraction that fetches a JSON Web Key Set, and the pieces that compose them
//! ([`Entry`], [`Tiered`], [`SingleFlight`], [`Clock`]).
//!
//! Third parties implement [`Cache`] or [`KeySource`] by depending on this crate alone; the
//! `jwkstash` facade composes them into a verifier.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use jwkstash_core::{Cache, Clock, Entry, ManualClock};
//!
//! # async fn demo(cache: Arc<dyn Cache<Vec<u8>>>) -> Result<(), jwkstash_core::CacheError> {
//! let clock = ManualClock::default();
//! let now = clock.now();
//! let entry = Entry::new(b"value".to_vec(), now, now + Duration::from_secs(600), now + Duration::from_secs(4200));
//! cache.put("source-key", entry).await?;
//! assert!(cache.get("source-key").await?.is_some());
//! # Ok(()) }
//! ```

pub mod guide;

mod cache;
mod clock;
mod coordination;
mod entry;
pub mod envelope;
mod error;
mod flight;
mod source;
mod tiered;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use cache::{Cache, CacheValue, DecodeError, get_or_load};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, TokioClock};
pub use coordination::{
    Directory, Invalidation, Invalidations, Lease, LeaseToken, MAX_ABOUT_BYTES, SharedTier,
    from_unix_millis, unix_millis,
};
pub use entry::Entry;
pub use error::{BoxError, CacheError, CacheErrorKind, FetchError};
pub use flight::{FlightError, SingleFlight};
#[cfg(any(test, feature = "mock"))]
pub use source::MockKeySource;
pub use source::{Fetched, KeySource, Validators};
pub use tiered::{Tier, Tiered};

/// Re-exported so that implementors of [`Cache`] and [`KeySource`] use the same macro version.
pub use async_trait::async_trait;
