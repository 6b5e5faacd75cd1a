//! Why keys could not be obtained: a refresh's failure, and what a verification answers then.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jwkstash_core::{FetchError, FlightError};

use crate::error::human;
use crate::jose::error::KeySetError;

/// The signing keys could not be obtained: the provider failed and no usable copy is left
/// (never fetched, or past `max_stale`). A service answers this with 503, not 401.
///
/// Its `Display` says why, with the whole chain of causes (`signing keys are unavailable:
/// could not connect to the key source: ...`), so that logging it is enough; for that reason
/// [`source`](std::error::Error::source) is `None` (an error reporter would print the causes
/// twice). [`cause`](Self::cause) gives the cause itself.
#[derive(Debug, Clone)]
pub struct KeysUnavailable {
    cause: Arc<RefreshError>,
    retry_after: Option<Duration>,
}

impl fmt::Display for KeysUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signing keys are unavailable: {}", self.cause)?;
        let mut next = std::error::Error::source(&*self.cause);
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        if let Some(retry_after) = self.retry_after {
            let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
            let retry_after = human(Duration::from_millis(millis));
            write!(f, " (next attempt in {retry_after})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KeysUnavailable {}

impl KeysUnavailable {
    pub(crate) fn new(cause: Arc<RefreshError>, retry_after: Option<Duration>) -> Self {
        Self { cause, retry_after }
    }

    /// What failed last.
    pub fn cause(&self) -> &RefreshError {
        &self.cause
    }

    /// When the next fetch will be tried, if known (for a `Retry-After` header).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Why a key set could not be refreshed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The key source failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The key source answered with a document that holds no usable key set.
    #[error(transparent)]
    KeySet(#[from] KeySetError),
    /// The fetch stopped before it ended: it panicked, or its runtime shut down.
    #[error("the key set fetch stopped before it ended")]
    Interrupted,
    /// The refetch for an unknown `kid` did not finish within `unknown_kid_wait`; it goes on in
    /// the background and its set serves later tokens.
    #[error("the key set refetch did not finish within {waited:?}")]
    Pending {
        /// How long the caller waited.
        waited: Duration,
    },
    /// A token named a `kid` the set lacks while the unknown-kid cooldown held the refetch back
    /// (another kid spent it): the provider has not been asked about this kid yet. A refetch
    /// runs when the cooldown ends, in `retry_after`.
    #[error(
        "the key set is refetched for unknown kids at most once per cooldown; the next refetch is in {retry_after:?}"
    )]
    KidRefetchCoolingDown {
        /// How long until the next refetch.
        retry_after: Duration,
    },
    /// An [`IssuerResolver`](crate::IssuerResolver) did not answer within its timeout
    /// ([`Issuers::resolve_timeout`](crate::Issuers::resolve_timeout)); the next token of the
    /// issuer asks again.
    #[error("the issuer resolver did not answer within {after:?}")]
    ResolverTimedOut {
        /// The timeout.
        after: Duration,
    },
    /// Another instance of the fleet held the fetch lease and its fetch failed.
    #[error("the fleet's fetch failed")]
    FleetFetchFailed,
    /// Another instance of the fleet tried the provider within the fleet's backoff period.
    #[error("the fleet is backing off after failed fetches")]
    FleetBackingOff,
}

impl From<FlightError> for RefreshError {
    fn from(_: FlightError) -> Self {
        Self::Interrupted
    }
}
