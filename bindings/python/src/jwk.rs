//! The signing key of a token, for code that keeps PyJWT (`get_signing_key_from_jwt`): found in
//! the verifier's key set, and given back as the JWK the provider published, which the Python
//! side turns into a `jwt.PyJWK`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::rust_api::{Algorithm, KeySet, VerifyingKey};

/// The longest header segment read (base64url): a header is a few hundred bytes.
const MAX_HEADER_SEGMENT: usize = 8 * 1024;

/// The members of a JWS header that name its key.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Header {
    alg: Option<String>,
    kid: Option<String>,
    x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

impl Header {
    /// The header of a compact JWS, read without checking anything else.
    pub(crate) fn read(token: &str) -> Result<Self, &'static str> {
        let segment = token.split('.').next().unwrap_or_default();
        if segment.len() > MAX_HEADER_SEGMENT {
            return Err("the header is too long");
        }
        let json = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| "the header is not base64url")?;
        serde_json::from_slice(&json).map_err(|_| "the header is not a JSON object")
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// Why no key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// No key of the set has the token's `kid` (or certificate thumbprint): a refetch may help.
    Absent,
    /// Keys have that name, but none fits the token's algorithm.
    NoFit,
    /// Several keys fit.
    Ambiguous,
}

impl Missing {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Absent => "unknown_kid",
            Self::NoFit => "algorithm_mismatch",
            Self::Ambiguous => "ambiguous_key",
        }
    }
}

/// The key of `set` that signs tokens with this header: by `kid`, else by certificate
/// thumbprint, else the only key of the set; among those, the one that accepts the header's
/// algorithm (when jwkstash knows it; PyJWT judges the algorithm again in `jwt.decode`).
pub(crate) fn find<'s>(set: &'s KeySet, header: &Header) -> Result<&'s VerifyingKey, Missing> {
    let thumbprint =
        |text: &Option<String>| text.as_ref().and_then(|t| URL_SAFE_NO_PAD.decode(t).ok());
    let named: Vec<&VerifyingKey> = if let Some(kid) = &header.kid {
        set.keys()
            .iter()
            .filter(|key| key.kid() == Some(kid))
            .collect()
    } else if let Some(wanted) = thumbprint(&header.x5t_s256) {
        set.keys()
            .iter()
            .filter(|key| key.x5t_s256().is_some_and(|t| t[..] == wanted[..]))
            .collect()
    } else if let Some(wanted) = thumbprint(&header.x5t) {
        set.keys()
            .iter()
            .filter(|key| key.x5t().is_some_and(|t| t[..] == wanted[..]))
            .collect()
    } else {
        set.keys().iter().collect()
    };
    if named.is_empty() {
        return Err(Missing::Absent);
    }
    let alg: Option<Algorithm> = header.alg.as_deref().and_then(|alg| alg.parse().ok());
    let fitting: Vec<&VerifyingKey> = match alg {
        Some(alg) => named.into_iter().filter(|key| key.accepts(alg)).collect(),
        None => named,
    };
    match fitting.as_slice() {
        [key] => Ok(key),
        [] => Err(Missing::NoFit),
        _ => Err(Missing::Ambiguous),
    }
}

/// The JWK (as published: the JSON text of its member of `keys`) that `set` parsed into the key
/// with `thumbprint`. Each member is parsed on its own to match it to the key, so a member that
/// jwkstash skipped never stands in for a usable one under the same `kid`.
pub(crate) fn published(set: &KeySet, thumbprint: u64) -> Option<String> {
    #[derive(Deserialize)]
    struct Document<'a> {
        #[serde(borrow)]
        keys: Vec<&'a RawValue>,
    }
    let document: Document<'_> = serde_json::from_slice(set.raw()).ok()?;
    document
        .keys
        .into_iter()
        .find(|member| {
            let alone = format!("{{\"keys\":[{}]}}", member.get());
            KeySet::parse(alone.into_bytes()).is_ok_and(|parsed| {
                parsed
                    .keys()
                    .first()
                    .is_some_and(|key| key.thumbprint() == thumbprint)
            })
        })
        .map(|member| member.get().to_owned())
}
