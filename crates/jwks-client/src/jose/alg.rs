//! The asymmetric JWS algorithms jwkstash accepts, and which keys fit them.

use std::fmt;
use std::str::FromStr;

/// An asymmetric JWS algorithm (RFC 7518, RFC 8037, RFC 9864) that jwkstash verifies. There is
/// no HMAC and no `none`: a remote key set never verifies a shared-secret signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512 (verified with aws-lc: jsonwebtoken has no ES512).
    ES512,
    /// EdDSA (RFC 8037), on Ed25519: the only EdDSA curve jwkstash verifies (never Ed448).
    EdDSA,
    /// Ed25519 by its fully-specified name (RFC 9864), as jose 6, jwcrypto, joserfc and
    /// oidc-provider 9 sign: the same signature as [`EdDSA`](Self::EdDSA) on an Ed25519 key, so
    /// a JWK pinned to either name verifies a token of either. On the allow-list
    /// ([`VerifierBuilder::algorithms`](crate::VerifierBuilder::algorithms)) the two names are
    /// separate.
    Ed25519,
}

impl Algorithm {
    /// The JOSE name (`RS256`, ..., `EdDSA`, `Ed25519`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// Whether a key whose JWK pins `self` (its `alg`) may verify a token signed with `alg`:
    /// the same algorithm, or `EdDSA` and `Ed25519`, two names of one signature on the Ed25519
    /// keys that alone fit either (RFC 9864 §2.2).
    pub(crate) fn admits(self, alg: Algorithm) -> bool {
        self == alg
            || matches!(
                (self, alg),
                (Self::EdDSA | Self::Ed25519, Self::EdDSA | Self::Ed25519)
            )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an algorithm name jwkstash does not verify, or of converting to
/// jsonwebtoken's an algorithm it does not have (`ES512`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an asymmetric JWS algorithm jwkstash verifies (or, converted, one jsonwebtoken has)")]
pub struct UnsupportedAlgorithm;

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Parses a JOSE name, byte for byte (case matters).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        parse_asymmetric(name).ok_or(UnsupportedAlgorithm)
    }
}

impl TryFrom<Algorithm> for jsonwebtoken::Algorithm {
    type Error = UnsupportedAlgorithm;

    /// jsonwebtoken's algorithm of the same signature: `Ed25519` is its `EdDSA` (which verifies
    /// Ed25519 only); `ES512` has none (jsonwebtoken 12 does not verify it, jwkstash does with
    /// aws-lc).
    fn try_from(alg: Algorithm) -> Result<Self, Self::Error> {
        Ok(match alg {
            Algorithm::RS256 => Self::RS256,
            Algorithm::RS384 => Self::RS384,
            Algorithm::RS512 => Self::RS512,
            Algorithm::PS256 => Self::PS256,
            Algorithm::PS384 => Self::PS384,
            Algorithm::PS512 => Self::PS512,
            Algorithm::ES256 => Self::ES256,
            Algorithm::ES384 => Self::ES384,
            Algorithm::EdDSA | Algorithm::Ed25519 => Self::EdDSA,
            Algorithm::ES512 => return Err(UnsupportedAlgorithm),
        })
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The algorithms accepted by default: every asymmetric algorithm jwkstash verifies.
/// `none` and the HMAC family are never accepted against a remote key set.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::EdDSA,
    Algorithm::Ed25519,
];

/// Parses a JOSE `alg` value of an asymmetric algorithm, byte for byte (case matters).
pub(crate) fn parse_asymmetric(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "ES512" => Algorithm::ES512,
        "EdDSA" => Algorithm::EdDSA,
        "Ed25519" => Algorithm::Ed25519,
        _ => return None,
    })
}

/// The standard JOSE `alg` values (IANA's "JSON Web Signature and Encryption Algorithms"
/// registry) that jwkstash cannot verify, each by its registered name: signature algorithms it
/// lacks, and the key management algorithms of encrypted tokens (JWE), which it does not
/// decrypt. `none` and the HMAC family are not here: they are refused as not allowed, as is
/// `RS1` (SHA-1, prohibited by the registry).
const STANDARD_UNSUPPORTED: &[&str] = &[
    // Signatures: ECDSA on secp256k1 (RFC 8812), Ed448 and ECDSA by fully-specified names
    // (RFC 9864).
    "ES256K",
    "Ed448",
    "ESP256",
    "ESP384",
    "ESP512",
    // Key management of encrypted tokens (RFC 7518 §4).
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
    "A128KW",
    "A192KW",
    "A256KW",
    "dir",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
];

/// The registered name of `name` if it is a standard JOSE algorithm jwkstash cannot verify
/// (byte for byte, like every name).
pub(crate) fn standard_unsupported(name: &str) -> Option<&'static str> {
    STANDARD_UNSUPPORTED
        .iter()
        .find(|standard| **standard == name)
        .copied()
}

/// A small set of algorithms (a bit set, so checking membership costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlgorithmSet(u16);

impl AlgorithmSet {
    fn bit(alg: Algorithm) -> u16 {
        DEFAULT_ALGORITHMS
            .iter()
            .position(|a| *a == alg)
            .map_or(0, |i| 1 << i)
    }

    /// The set of `algs`; HMAC and unknown algorithms are dropped.
    pub(crate) fn of(algs: &[Algorithm]) -> Self {
        Self(algs.iter().fold(0, |set, alg| set | Self::bit(*alg)))
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        let bit = Self::bit(alg);
        bit != 0 && self.0 & bit != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The type of a public key in a key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// An RSA key of the given modulus size.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
    },
    /// An ECDSA key on P-256.
    EcP256,
    /// An ECDSA key on P-384.
    EcP384,
    /// An ECDSA key on P-521.
    EcP521,
    /// An Ed25519 key.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg` (the fit used when the JWK has no `alg`).
    pub fn fits(self, alg: Algorithm) -> bool {
        match self {
            Self::Rsa { .. } => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            Self::EcP256 => alg == Algorithm::ES256,
            Self::EcP384 => alg == Algorithm::ES384,
            Self::EcP521 => alg == Algorithm::ES512,
            Self::Ed25519 => matches!(alg, Algorithm::EdDSA | Algorithm::Ed25519),
        }
    }

    /// Whether two kinds are the same key type (`kty`), so that sharing a `kid` is ambiguous.
    pub(crate) fn same_type(self, other: Self) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
            || matches!(
                (self, other),
                (
                    Self::EcP256 | Self::EcP384 | Self::EcP521,
                    Self::EcP256 | Self::EcP384 | Self::EcP521
                )
            )
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::EcP256 => f.write_str("EC P-256"),
            Self::EcP384 => f.write_str("EC P-384"),
            Self::EcP521 => f.write_str("EC P-521"),
            Self::Ed25519 => f.write_str("Ed25519"),
        }
    }
}
