use std::fmt;
use std::time::Duration;

/// A boxed error that can cross threads: the source type of every jwkstash error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a cache backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheErrorKind {
    /// The backend could not be reached (connection refused, circuit open).
    Unavailable,
    /// The backend did not answer within its deadline.
    Timeout,
    /// The backend answered with something that is not a valid entry.
    Corrupt,
    /// Anything else.
    Other,
}

impl fmt::Display for CacheErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timed out",
            Self::Corrupt => "corrupt value",
            Self::Other => "failed",
        })
    }
}

/// An error of a [`Cache`](crate::Cache) backend.
///
/// Backends convert their own error types into this one, so no dependency's error type appears
/// in a public signature.
#[derive(Debug, thiserror::Error)]
#[error("{backend} cache {kind}")]
pub struct CacheError {
    backend: &'static str,
    kind: CacheErrorKind,
    #[source]
    source: Option<BoxError>,
}

impl CacheError {
    /// An error of `backend` (its [`Cache::name`](crate::Cache::name)) of the given kind.
    pub fn new(backend: &'static str, kind: CacheErrorKind) -> Self {
        Self {
            backend,
            kind,
            source: None,
        }
    }

    /// The same error with its cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// What went wrong.
    pub fn kind(&self) -> CacheErrorKind {
        self.kind
    }

    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self.kind,
            CacheErrorKind::Unavailable | CacheErrorKind::Timeout
        )
    }
}

/// An error of a [`KeySource`](crate::KeySource) fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The whole fetch did not finish within its deadline.
    #[error("key source did not answer within {0:?}")]
    Timeout(Duration),
    /// No connection could be made.
    #[error("could not connect to the key source")]
    Connect(#[source] BoxError),
    /// The connection failed after it was made (reset, truncated body, TLS error).
    #[error("transport error while fetching keys")]
    Transport(#[source] BoxError),
    /// The source answered with a status other than 200 or 304.
    #[error("key source answered HTTP {0}")]
    Status(u16),
    /// The body was larger than the configured limit.
    #[error("key source body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The source redirected to a location it may not (another origin, or plain http).
    #[error("redirect to another origin refused")]
    Redirect,
    /// The source answered 200 with a body that is not a usable key set.
    #[error("key source sent an unusable key set: {0}")]
    InvalidKeySet(String),
    /// The OpenID Connect discovery document was refused (issuer mismatch, no usable
    /// `jwks_uri`, not JSON).
    #[error("OpenID configuration refused: {0}")]
    Discovery(String),
    /// Anything else, such as an error of a third-party source.
    #[error("key source failed")]
    Other(#[source] BoxError),
}

impl FetchError {
    /// Whether trying again soon may succeed (timeouts, connection errors, 5xx).
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Connect(_) | Self::Transport(_) => true,
            Self::Status(status) => *status >= 500,
            _ => false,
        }
    }
}
