//! The cheap checks of a compact JWS, before any key is looked up: size, shape, base64url,
//! header JSON, algorithm on the allow-list, `crit`, `kid`.

use std::borrow::Cow;
use std::fmt;

use crate::jose::alg::Algorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::jose::alg::{AlgorithmSet, parse_asymmetric, standard_unsupported};
use crate::jose::error::InvalidToken;
use crate::jose::json::{Checked, Name, SeenNames, StrMember};
use crate::jose::keyset::{KeyId, MAX_KID_BYTES};

/// A compact JWS split into its parts, with the header checked.
pub(crate) struct Token<'t> {
    pub(crate) alg: Algorithm,
    /// How the token names its key: `kid`, else `x5t#S256`, else `x5t`.
    pub(crate) key_id: Option<KeyId>,
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
        required_typ: Option<&str>,
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
        if header.jwe {
            return Err(InvalidToken::Malformed(
                "a JWE member (enc, zip) in a JWS header",
            ));
        }
        match (&header.typ, required_typ) {
            (Some(StrMember::Other), _) => return Err(InvalidToken::InvalidType),
            (Some(StrMember::Str(typ)), Some(required)) if same_media_type(typ, required) => {}
            (_, Some(_)) => return Err(InvalidToken::InvalidType),
            (_, None) => {}
        }
        let name = header.alg.as_deref().unwrap_or_default();
        let alg = match parse_asymmetric(name) {
            Some(alg) if algorithms.contains(alg) => alg,
            Some(_) => return Err(InvalidToken::AlgorithmNotAllowed),
            None => {
                return Err(standard_unsupported(name)
                    .map_or(InvalidToken::AlgorithmNotAllowed, |name| {
                        InvalidToken::AlgorithmNotSupported(name)
                    }));
            }
        };
        let key_id = match (header.kid, header.x5t_s256, header.x5t) {
            (Some(StrMember::Str(kid)), _, _) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => {
                Some(KeyId::Kid(kid.into()))
            }
            (Some(_), _, _) => return Err(InvalidToken::InvalidKid),
            (None, Some(x5t_s256), _) => Some(KeyId::X5tS256(thumbprint(x5t_s256)?)),
            (None, None, Some(x5t)) => Some(KeyId::X5t(thumbprint(x5t)?)),
            (None, None, None) => None,
        };
        Ok(Self {
            alg,
            key_id,
            message,
            payload,
            signature,
        })
    }
}

/// A certificate thumbprint of `N` bytes, base64url without padding; anything else is an
/// invalid key identifier.
fn thumbprint<const N: usize>(member: StrMember<'_>) -> Result<[u8; N], InvalidToken> {
    let StrMember::Str(text) = member else {
        return Err(InvalidToken::InvalidKid);
    };
    // Checked before decoding: the output is bounded by the expected length.
    if text.len() != (N * 4).div_ceil(3) {
        return Err(InvalidToken::InvalidKid);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .map_err(|_| InvalidToken::InvalidKid)?;
    <[u8; N]>::try_from(bytes).map_err(|_| InvalidToken::InvalidKid)
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

/// Whether a `typ` names the media type `required`: compared case-insensitively, with or without
/// the `application/` prefix (RFC 7515 §4.1.9).
fn same_media_type(typ: &str, required: &str) -> bool {
    fn short(media_type: &str) -> &str {
        match media_type.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &media_type[12..],
            _ => media_type,
        }
    }
    short(typ).eq_ignore_ascii_case(short(required))
}

/// The header members jwkstash acts on. `jku`, `x5u`, `jwk` and `x5c` are read in full and
/// never followed: keys come only from the configured key set (`x5t` and `x5t#S256` only
/// name a key of that set). A `kid` or `typ` that is not a
/// string is kept as such and refused after parsing, as its own error.
struct Header<'a> {
    alg: Option<Cow<'a, str>>,
    kid: Option<StrMember<'a>>,
    x5t: Option<StrMember<'a>>,
    x5t_s256: Option<StrMember<'a>>,
    typ: Option<StrMember<'a>>,
    crit: bool,
    /// `enc` or `zip`: members of a JWE, never of a JWS.
    jwe: bool,
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
            kid: None,
            x5t: None,
            x5t_s256: None,
            typ: None,
            crit: false,
            jwe: false,
        };
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            seen.insert(name.clone())?;
            match &*name {
                "alg" => header.alg = Some(map.next_value::<Name<'de>>()?.0),
                "kid" => header.kid = Some(map.next_value()?),
                "x5t" => header.x5t = Some(map.next_value()?),
                "x5t#S256" => header.x5t_s256 = Some(map.next_value()?),
                "typ" => header.typ = Some(map.next_value()?),
                "crit" => {
                    map.next_value::<Checked>()?;
                    header.crit = true;
                }
                "enc" | "zip" => {
                    map.next_value::<Checked>()?;
                    header.jwe = true;
                }
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        if header.alg.is_none() {
            return Err(de::Error::missing_field("alg"));
        }
        Ok(header)
    }
}
