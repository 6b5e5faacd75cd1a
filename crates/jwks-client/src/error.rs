use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jwkstash_core::{FetchError, FlightError};

use crate::keyset::SkippedKey;

/// Why a token was refused. A service answers these with 401.
///
/// The variants name the rule that failed, never the attacker's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The token is longer than the configured limit (checked before any decoding).
    #[error("token exceeds {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The token is not a compact JWS of three base64url segments with JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm outside the allow-list: `none`, HMAC, a name jwkstash
    /// does not know, or one the caller left off
    /// [`VerifierBuilder::algorithms`](crate::VerifierBuilder::algorithms).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header names a standard JOSE algorithm (IANA's registry) that jwkstash cannot
    /// verify: `ES256K`, `Ed448`, `ESP256`, ..., or an encryption algorithm (`RSA-OAEP`,
    /// `dir`, ...: a JWE, which jwkstash does not decrypt). The provider signs with something
    /// this library lacks, which is a configuration to change rather than an attack.
    #[error(
        "{0} is a standard JOSE algorithm that jwkstash does not verify; have the provider sign with one of DEFAULT_ALGORITHMS"
    )]
    AlgorithmNotSupported(&'static str),
    /// The header carries `crit`: no JWS extension is understood, so the token is refused.
    #[error("critical header extension not understood")]
    UnsupportedCritical,
    /// The header's `kid` is not a string of an acceptable length.
    #[error("invalid kid")]
    InvalidKid,
    /// The token has no `kid` and the key set has no single key that fits its algorithm.
    #[error("token has no kid and no single key fits")]
    MissingKid,
    /// No key in the issuer's key set has the token's `kid`, even after a refetch.
    #[error("unknown kid")]
    UnknownKid,
    /// More than one key of the same type has the token's `kid`.
    #[error("ambiguous key: several keys share the kid")]
    AmbiguousKey,
    /// The key with the token's `kid` does not fit the token's algorithm.
    #[error("algorithm does not fit the key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is later than now plus the leeway (refused by default; see
    /// `VerifierBuilder::accept_future_iat`).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// The header's `typ` is not a string, or not the type the verifier requires.
    #[error("token type not accepted")]
    InvalidType,
    /// `exp - iat` (or `exp - now` without `iat`) is longer than the configured maximum.
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong JSON type or an impossible value.
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// `iss` is not the configured issuer.
    #[error("issuer not accepted")]
    InvalidIssuer,
    /// `iss` matches the verifier's issuer template, but its value is not the token's claim
    /// that the template names (Entra: `tid`).
    #[error("the tenant in iss is not the token's tenant claim")]
    TenantMismatch,
    /// The key that verified the signature is bound to another issuer (its JWK's `issuer`).
    #[error("the key is not for this issuer")]
    KeyNotForIssuer,
    /// `iss` is absent or names no issuer of the registry ([`Issuers`](crate::Issuers)).
    #[error("unknown issuer")]
    UnknownIssuer,
    /// `aud` names none of the configured audiences.
    #[error("audience not accepted")]
    InvalidAudience,
    /// The claims did not deserialize into the caller's type.
    #[error("claims do not match the expected type")]
    ClaimsType,
}

impl InvalidToken {
    /// A short stable name of the rule that failed (`"expired"`, `"bad_signature"`, ...), for
    /// logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::AlgorithmNotSupported(_) => "algorithm_not_supported",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::InvalidKid => "invalid_kid",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::AmbiguousKey => "ambiguous_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::IssuedInFuture => "issued_in_future",
            Self::InvalidType => "invalid_type",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::InvalidIssuer => "invalid_issuer",
            Self::UnknownIssuer => "unknown_issuer",
            Self::TenantMismatch => "tenant_mismatch",
            Self::KeyNotForIssuer => "key_not_for_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::ClaimsType => "claims_type",
        }
    }
}

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
            let retry_after = crate::policy::human(Duration::from_millis(millis));
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

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array (or not JSON at all).
    #[error("not a JWKS document: {0}")]
    NotAKeySet(String),
    /// The document parsed, but no key in it can verify tokens. Its `Display` names the
    /// skipped keys and why (the first 8, then how many more).
    #[error("no usable key in the set: {}", describe_skipped(.skipped))]
    NoUsableKey {
        /// The keys that were skipped, and why (empty: the document has no keys).
        skipped: Vec<SkippedKey>,
    },
    /// A 304 answered a request that named no cached copy.
    #[error("not modified, but no cached copy to extend")]
    UnexpectedNotModified,
    /// The document could not be read (a [`StaticKeySource`](crate::StaticKeySource) file).
    #[error("the key set could not be read: {0}")]
    Unreadable(String),
}

/// How many skipped keys the `Display` of [`KeySetError::NoUsableKey`] names; it counts the
/// others.
const MAX_NAMED_SKIPS: usize = 8;

fn describe_skipped(skipped: &[SkippedKey]) -> String {
    if skipped.is_empty() {
        return "it has no keys".to_owned();
    }
    let mut described: Vec<String> = skipped
        .iter()
        .take(MAX_NAMED_SKIPS)
        .map(SkippedKey::to_string)
        .collect();
    if skipped.len() > MAX_NAMED_SKIPS {
        described.push(format!("and {} more", skipped.len() - MAX_NAMED_SKIPS));
    }
    described.join("; ")
}

/// The error of [`Verifier::verify`](crate::Verifier::verify).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not acceptable (answer 401).
    #[error(transparent)]
    InvalidToken(#[from] InvalidToken),
    /// The keys to check it are unavailable (answer 503).
    #[error(transparent)]
    KeysUnavailable(#[from] KeysUnavailable),
}

impl VerifyError {
    /// Whether the fault is the token's (401) rather than ours or the provider's (503).
    pub fn is_invalid_token(&self) -> bool {
        matches!(self, Self::InvalidToken(_))
    }

    /// The HTTP status a service should answer with: 401 or 503.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidToken(_) => 401,
            Self::KeysUnavailable(_) => 503,
        }
    }
}

/// A configuration that [`build`](crate::VerifierBuilder::build) refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No issuer was configured: tokens are bound to their issuer.
    #[error("an issuer is required")]
    MissingIssuer,
    /// No audience was configured and `any_audience()` was not called.
    #[error("an audience is required (or call any_audience())")]
    MissingAudience,
    /// No key source was configured.
    #[error("a key source is required: call jwks_url(), discover() or key_source()")]
    MissingKeySource,
    /// No near tier was configured and the `memory` feature (the default moka tier) is off.
    #[error(
        "an in-process tier is required: enable the `memory` feature or pass one to near_tier()"
    )]
    MissingCache,
    /// The URL does not parse or has no host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A plain `http://` URL, refused unless
    /// [`allow_http_loopback`](crate::VerifierBuilder::allow_http_loopback) was called and the
    /// host is this machine.
    #[error(
        "plain http refused for {0}: use https, or call allow_http_loopback() for a provider on this machine (it admits the loopback hosts localhost, 127.0.0.0/8 and ::1 only)"
    )]
    InsecureUrl(String),
    /// A setting is out of range; the message gives its value, the range and the defaults.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// Two builder calls that contradict each other, named in the order they were made (the
    /// later would silently replace or void the earlier): `jwks_url()`, `discover()` and
    /// `key_source()` each set where the keys come from, and `allow_http_loopback()` applies
    /// only to `jwks_url()` and `discover()`.
    #[error("{}", describe_conflict(.first, .second))]
    ConflictingCalls {
        /// The earlier call, such as `"jwks_url()"`.
        first: &'static str,
        /// The later call, such as `"key_source()"`.
        second: &'static str,
    },
    /// The pinned keys ([`VerifierBuilder::pinned_keys`](crate::VerifierBuilder::pinned_keys))
    /// are not a usable key set.
    #[error("pinned keys refused")]
    PinnedKeys(#[source] KeySetError),
    /// The snapshot directory ([`VerifierBuilder::snapshot_dir`](crate::VerifierBuilder::snapshot_dir))
    /// is missing, not a directory or not writable.
    #[cfg(feature = "file")]
    #[error("snapshot tier refused")]
    Snapshot(#[source] jwkstash_file::BuildError),
    /// The HTTP client could not be built.
    #[error("HTTP client could not be built")]
    Client(#[source] jwkstash_core::BoxError),
}

impl BuildError {
    /// An [`InvalidSetting`](Self::InvalidSetting) saying `why`.
    pub(crate) fn invalid_setting(why: impl Into<String>) -> Self {
        Self::InvalidSetting(why.into())
    }
}

fn describe_conflict(first: &str, second: &str) -> String {
    if first == "allow_http_loopback()" || second == "allow_http_loopback()" {
        return format!(
            "{first} and {second} cannot be combined: allow_http_loopback() applies to \
             jwks_url() and discover() only; for a source of your own, call \
             allow_http_loopback() on its builder (HttpKeySource::builder, \
             DiscoverySource::builder)"
        );
    }
    let calls = if first == second {
        format!("{first} was called twice")
    } else {
        format!("{first} and {second} each set where the keys come from")
    };
    format!(
        "{calls}: a verifier has one key source; call one of them once (for a second source \
         when the first fails, key_source(Failover::new(primary, secondary)))"
    )
}
