//! The cheap checks of a compact JWS, before any key is looked up: size, shape, base64url,
//! header JSON, algorithm on the allow-list, `crit`, `kid`.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::alg::{AlgorithmSet, parse_asymmetric};
use crate::error::InvalidToken;
use crate::json::{Name, SeenNames};
use crate::keyset::MAX_KID_BYTES;

/// A compact JWS split into its parts, with the header checked.
pub(crate) struct Token<'t> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// `header.payload`, the signed message.
    pub(crate) message: &'t str,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
}

impl<'t> Token<'t> {
    /// Splits and checks `token`. Costs O(`max_bytes`) at most, whatever the input.
    pub(crate) fn parse(
        token: &'t str,
        max_bytes: usize,
        algorithms: AlgorithmSet,
    ) -> Result<Self, InvalidToken> {
        if token.len() > max_bytes {
            return Err(InvalidToken::TooLarge { limit: max_bytes });
        }
        let mut segments = token.splitn(4, '.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(InvalidToken::Malformed("not three segments"));
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(InvalidToken::Malformed("empty segment"));
        }
        // Payload and signature are decoded only after the key is found; refuse padding,
        // whitespace and the standard alphabet now, before anything is looked up.
        if !is_base64url(payload) || !is_base64url(signature) {
            return Err(InvalidToken::Malformed("segment is not base64url"));
        }
        let message = &token[..header.len() + 1 + payload.len()];
        let header_json = decode_segment(header)?;
        let header: Header<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| InvalidToken::Malformed("header is not a valid JSON object"))?;
        if header.crit {
            return Err(InvalidToken::UnsupportedCritical);
        }
        let alg = parse_asymmetric(header.alg.as_deref().unwrap_or_default())
            .filter(|alg| algorithms.contains(*alg))
            .ok_or(InvalidToken::AlgorithmNotAllowed)?;
        let kid = match header.kid {
            KidMember::Absent => None,
            KidMember::Valid(kid) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => Some(kid),
            KidMember::Valid(_) | KidMember::Invalid => return Err(InvalidToken::InvalidKid),
        };
        Ok(Self {
            alg,
            kid,
            message,
            payload,
            signature,
        })
    }
}

/// The base64url alphabet as a table: one load per byte.
const BASE64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        i += 1;
    }
    table
};

fn is_base64url(segment: &str) -> bool {
    segment.bytes().all(|b| BASE64URL[usize::from(b)])
}

/// Decodes one segment: base64url without padding, nothing else (no `=`, `+`, `/`, spaces).
pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, InvalidToken> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| InvalidToken::Malformed("segment is not base64url"))
}

enum KidMember {
    Absent,
    Valid(String),
    /// Present but not a string: refused after parsing, as its own error.
    Invalid,
}

/// The header members jwkstash acts on. `jku`, `x5u`, `jwk` and `x5c` are read past and never
/// followed: keys come only from the configured key set.
struct Header<'a> {
    alg: Option<Cow<'a, str>>,
    kid: KidMember,
    crit: bool,
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
        let mut seen = SeenNames::default();
        let mut header = Header {
            alg: None,
            kid: KidMember::Absent,
            crit: false,
        };
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            seen.insert(name.clone())?;
            match &*name {
                "alg" => header.alg = Some(map.next_value::<Name<'de>>()?.0),
                "kid" => {
                    header.kid = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(kid) => KidMember::Valid(kid),
                        _ => KidMember::Invalid,
                    }
                }
                "crit" => {
                    map.next_value::<IgnoredAny>()?;
                    header.crit = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if header.alg.is_none() {
            return Err(de::Error::missing_field("alg"));
        }
        Ok(header)
    }
}
