//! Why a token, a key or a key set is refused: the security core's verdicts.

use std::fmt;

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

/// A key that was left out of the set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedKey {
    /// Its `kid` if it had a usable one (at most [`MAX_KID_BYTES`](crate::MAX_KID_BYTES)).
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl fmt::Display for SkippedKey {
    /// `kid "k1": use is not sig`, or `a key without a usable kid: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "kid {kid:?}: {}", self.reason),
            None => write!(f, "a key without a usable kid: {}", self.reason),
        }
    }
}

/// Why a key of a JWKS document was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Not a JSON object with the members its `kty` needs, or members of the wrong type.
    Malformed,
    /// A `kty` that is not RSA, EC or OKP.
    UnsupportedKeyType,
    /// A curve that is not P-256, P-384, P-521 or Ed25519.
    UnsupportedCurve,
    /// The key carries private members (`d`, `p`, `q`, ...): published by mistake, never used.
    PrivateKey,
    /// A symmetric (`oct`) key: HMAC is never accepted against a remote key set.
    SymmetricKey,
    /// `use` is not `sig`.
    NotForSignatures,
    /// `key_ops` does not include `verify`.
    NoVerifyOperation,
    /// `alg` is not an accepted asymmetric algorithm or does not fit the key type.
    UnsupportedAlgorithm,
    /// An RSA modulus below [`MIN_RSA_BITS`](crate::MIN_RSA_BITS) or above [`MAX_RSA_BITS`](crate::MAX_RSA_BITS).
    RsaSize,
    /// An RSA exponent that is even, below 3, or wider than 32 bits.
    RsaExponent,
    /// EC or Ed25519 coordinates of the wrong length.
    BadCoordinates,
    /// EC coordinates of the right length that are not a point on the named curve.
    PointNotOnCurve,
    /// A `kid` longer than [`MAX_KID_BYTES`](crate::MAX_KID_BYTES).
    KidTooLong,
    /// The set already had [`MAX_KEYS`](crate::MAX_KEYS) usable keys.
    TooManyKeys,
    /// The `x5c` leaf certificate is not a readable X.509 certificate (or is too long).
    Certificate,
    /// The `x5c` certificate's key differs from the JWK's members (its `kty`, its `crv`, or its
    /// key members), or a stated `x5t` / `x5t#S256` differs from the certificate's thumbprint.
    CertificateMismatch,
    /// `key_ops` names an operation that a key of this type cannot take part in: `encrypt`,
    /// `decrypt`, `wrapKey` or `unwrapKey` on an EC or Ed25519 key, `deriveKey` or
    /// `deriveBits` on an RSA or Ed25519 key.
    KeyOperationsMismatch,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed key",
            Self::UnsupportedKeyType => "unsupported kty",
            Self::UnsupportedCurve => "unsupported curve",
            Self::PrivateKey => "private key material published",
            Self::SymmetricKey => "symmetric (oct) key",
            Self::NotForSignatures => "use is not sig",
            Self::NoVerifyOperation => "key_ops lacks verify",
            Self::UnsupportedAlgorithm => "alg not accepted for this key",
            Self::RsaSize => "RSA modulus size out of range",
            Self::RsaExponent => "RSA exponent refused",
            Self::BadCoordinates => "bad curve coordinates",
            Self::PointNotOnCurve => "the point is not on the curve",
            Self::KidTooLong => "kid too long",
            Self::TooManyKeys => "too many keys",
            Self::Certificate => "unreadable x5c certificate",
            Self::CertificateMismatch => "x5c certificate does not match the key",
            Self::KeyOperationsMismatch => "key_ops names an operation of another key type",
        })
    }
}
