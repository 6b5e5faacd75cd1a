//! Optional capabilities of shared tiers: a fleet-wide [`Lease`] and [`Invalidations`].
//!
//! A tier shared by many instances (Redis) implements them so that a whole fleet behaves like
//! one careful client of the provider; the in-process tier implements them for one process.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{Cache, CacheError};

/// Proof of holding a lease, needed to release it.
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A new random token.
    pub fn random() -> Self {
        let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseToken(..)")
    }
}

/// Fleet-wide claims on the entries of a shared tier.
///
/// # Contract
///
/// * [`acquire`](Lease::acquire): at most one holder of the lease on `key` at a time; the lease
///   ends by itself after `ttl` (measured by the tier), so a holder that dies does not block
///   the fleet for longer.
/// * [`renew`](Lease::renew): the holder extends its lease to `ttl` from now while it works
///   (a heartbeat), so `ttl` only has to cover noticing a dead holder, not the longest fetch.
///   A token that no longer holds the lease renews nothing.
/// * [`claim_period`](Lease::claim_period): succeeds for at most one caller per `period`, with
///   times given by the caller's clock, so cooldowns follow an injected clock.
/// * [`last_claimed`](Lease::last_claimed) reads a claim without changing it.
/// * `slot` names are short identifiers built by jwkstash (hashes, fixed words), never raw input.
#[async_trait]
pub trait Lease: Send + Sync + fmt::Debug {
    /// Takes the lease on `key` for `ttl` unless someone holds it; `None` when held elsewhere.
    async fn acquire(&self, key: &str, ttl: Duration) -> Result<Option<LeaseToken>, CacheError>;

    /// Ends the lease on `key` early if `token` still holds it.
    async fn release(&self, key: &str, token: &LeaseToken) -> Result<(), CacheError>;

    /// Extends the lease on `key` to end `ttl` from now if `token` still holds it; `false` when
    /// it does not (the lease ended and may be someone else's).
    async fn renew(&self, key: &str, token: &LeaseToken, ttl: Duration)
    -> Result<bool, CacheError>;

    /// Claims `slot` of `key` at `now` if no claim was made within the last `period`.
    async fn claim_period(
        &self,
        key: &str,
        slot: &str,
        now: SystemTime,
        period: Duration,
    ) -> Result<bool, CacheError>;

    /// When `slot` of `key` was last claimed, if it still is remembered.
    async fn last_claimed(&self, key: &str, slot: &str) -> Result<Option<SystemTime>, CacheError>;
}

/// A change of the entry under `key` to the one fetched at `version` (milliseconds since the
/// epoch of its `fetched_at`), or a request to refresh it (`version` 0: an operator's tool asks
/// the instances that read the entry to fetch it now).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invalidation {
    /// The cache key whose entry changed.
    pub key: String,
    /// The `fetched_at` of the new entry, in milliseconds since the epoch; 0 for a refresh
    /// request.
    pub version: u64,
}

impl Invalidation {
    /// An announcement that the entry `key` now holds `version`.
    pub fn new(key: impl Into<String>, version: u64) -> Self {
        Self {
            key: key.into(),
            version,
        }
    }

    /// A request that the instances reading `key` refresh it now (the `jwkstash refresh`
    /// command). They honour it as a forced refresh: at most one fetch per
    /// `min_refresh_interval` for the whole fleet, whoever asks.
    pub fn refresh_request(key: impl Into<String>) -> Self {
        Self::new(key, 0)
    }

    /// Whether this is a refresh request rather than news of a new entry.
    pub fn is_refresh_request(&self) -> bool {
        self.version == 0
    }
}

/// Publish/subscribe of [`Invalidation`]s among the instances that share a tier.
///
/// Delivery is best effort: subscribers also find changes by reading the tier.
#[async_trait]
pub trait Invalidations: Send + Sync + fmt::Debug {
    /// Tells every subscriber (this instance included) that `invalidation.key` changed.
    async fn publish(&self, invalidation: Invalidation) -> Result<(), CacheError>;

    /// A receiver of the invalidations published from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Invalidation>;
}

/// What the entries of a shared tier hold, announced by the instances that read them, so that
/// an operator's tool (`jwkstash refresh`) can name the entry of an issuer instead of
/// rebuilding its key from flags that may not match the fleet's configuration.
///
/// # Contract
///
/// * [`announce`](Directory::announce) records `about` for `key`, replacing an earlier record;
///   `about` is a short document built by jwkstash (at most [`MAX_ABOUT_BYTES`]).
/// * [`announced`](Directory::announced) lists every recorded entry with its latest `about`.
#[async_trait]
pub trait Directory: Send + Sync + fmt::Debug {
    /// Records what the entry `key` holds.
    async fn announce(&self, key: &str, about: &str) -> Result<(), CacheError>;

    /// Every entry recorded, with what it holds, in no particular order.
    async fn announced(&self) -> Result<Vec<(String, String)>, CacheError>;
}

/// The longest `about` document a [`Directory`] keeps, in bytes.
pub const MAX_ABOUT_BYTES: usize = 4096;

/// A tier that a fleet shares: a [`Cache`] with a [`Lease`], [`Invalidations`] and a
/// [`Directory`].
pub trait SharedTier<V>: Cache<V> + Lease + Invalidations + Directory {}

impl<V, T: Cache<V> + Lease + Invalidations + Directory + ?Sized> SharedTier<V> for T {}

/// Milliseconds since the epoch (0 before it), the unit of versions and claims.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The instant `millis` milliseconds after the epoch.
pub fn from_unix_millis(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}
