//! The parsed key set: kid → verifying keys, built once per fetch.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, TryLockError};

use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use jsonwebtoken::DecodingKey;
use jwkstash_core::{CacheValue, DecodeError};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::jose::alg::{Algorithm, KeyKind, parse_asymmetric};
use crate::jose::certificate;
use crate::jose::error::{InvalidToken, KeySetError};
use crate::jose::error::{SkipReason, SkippedKey};

/// RSA moduli below this many bits are refused, whatever the crypto backend accepts.
pub const MIN_RSA_BITS: u32 = 2048;
/// RSA moduli above this many bits are refused (they make every verification slow).
pub const MAX_RSA_BITS: u32 = 8192;
/// At most this many usable keys are kept from one document; the rest are skipped.
pub const MAX_KEYS: usize = 100;
/// A `kid` longer than this (in bytes) is refused, in a key set and in a token.
pub const MAX_KID_BYTES: usize = 256;
/// A JWK whose `issuer` member is longer than this (in bytes) is skipped.
const MAX_KEY_ISSUER_BYTES: usize = 1024;

/// JWK members are base64url; tolerate padding there (some providers send it), unlike in tokens.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One public key that can verify signatures.
pub struct VerifyingKey {
    kid: Option<Box<str>>,
    kind: KeyKind,
    alg: Option<Algorithm>,
    key: Key,
    thumbprint: u64,
    /// The issuer this key is bound to (the JWK's `issuer`, as Entra publishes), if any.
    issuer: Option<Box<str>>,
    /// The SHA-1 thumbprint of its certificate (`x5t`), if it has one.
    x5t: Option<[u8; 20]>,
    /// The SHA-256 thumbprint of its certificate (`x5t#S256`), if it has one.
    x5t_s256: Option<[u8; 32]>,
}

impl VerifyingKey {
    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key type and size.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithm the JWK pins (`alg`), if any.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Whether this key may verify a token signed with `alg`: the JWK's `alg` if it has one,
    /// else its key type and curve. `EdDSA` and `Ed25519` are one signature on an Ed25519
    /// key: a key pinned to either accepts both.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|pinned| pinned.admits(alg))
    }

    /// Whether `signature` (base64url without padding: the third segment of a compact JWS) is
    /// this key's signature of `message` (the first two segments and the dot between them)
    /// under `alg`. False when the key does not [`accept`](Self::accepts) `alg`, and for a
    /// signature that is not base64url. ES512 is checked with aws-lc, the others through
    /// jsonwebtoken.
    pub fn verify_signature(&self, alg: Algorithm, message: &[u8], signature: &str) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match &self.key {
            Key::Jwt(key) => jsonwebtoken::Algorithm::try_from(alg).is_ok_and(|alg| {
                jsonwebtoken::crypto::verify(signature, message, key, alg).unwrap_or(false)
            }),
            Key::P521(key) => {
                // r and s, 66 bytes each, decoded on the stack: a longer signature does not fit
                // (refused before decoding), a shorter one fills less than all of it.
                let mut raw = [0u8; P521_SIGNATURE_BYTES];
                URL_SAFE_NO_PAD.decode_slice(signature, &mut raw) == Ok(raw.len())
                    && key.verify_sig(message, &raw).is_ok()
            }
        }
    }

    /// A short hash of the key material: equal keys have equal thumbprints.
    pub fn thumbprint(&self) -> u64 {
        self.thumbprint
    }

    /// The issuer the key is bound to (its JWK's `issuer` member, e.g. Entra's
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`): it verifies only tokens of that
    /// issuer.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The SHA-1 thumbprint of the key's X.509 certificate (`x5t`): from its `x5c`, or as
    /// the JWK states it.
    pub fn x5t(&self) -> Option<&[u8; 20]> {
        self.x5t.as_ref()
    }

    /// The SHA-256 thumbprint of the key's X.509 certificate (`x5t#S256`).
    pub fn x5t_s256(&self) -> Option<&[u8; 32]> {
        self.x5t_s256.as_ref()
    }
}

/// A P-521 signature in JWS form (RFC 7518 §3.4): r and s, 66 bytes each.
const P521_SIGNATURE_BYTES: usize = 132;

/// A key ready to verify: jsonwebtoken's, or aws-lc's for what jsonwebtoken lacks (ES512).
enum Key {
    Jwt(DecodingKey),
    /// Parsed once (the point checked on P-521), verified without re-parsing.
    P521(ParsedPublicKey),
}

/// How a token names its key: `kid`, else `x5t#S256`, else `x5t` (certificate thumbprints,
/// as AD FS, Azure DevOps and WSO2 tokens carry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyId {
    Kid(Box<str>),
    X5tS256([u8; 32]),
    X5t([u8; 20]),
}

impl KeyId {
    /// The identifier's bytes, for hashing (a kid's bytes, or a thumbprint behind a prefix
    /// that no kid lookup shares).
    pub(crate) fn hash_input(&self) -> Vec<u8> {
        match self {
            Self::Kid(kid) => kid.as_bytes().to_vec(),
            Self::X5tS256(thumbprint) => [b"\0x5t#S256\0".as_slice(), thumbprint].concat(),
            Self::X5t(thumbprint) => [b"\0x5t\0".as_slice(), thumbprint].concat(),
        }
    }

    /// Whether `key` has this identifier.
    pub(crate) fn names(&self, key: &VerifyingKey) -> bool {
        match self {
            Self::Kid(kid) => key.kid() == Some(&**kid),
            Self::X5tS256(thumbprint) => key.x5t_s256() == Some(thumbprint),
            Self::X5t(thumbprint) => key.x5t() == Some(thumbprint),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    // The key material stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// How many documents with skipped keys a process remembers having warned about (a ring of
/// fingerprints, 8 KiB): the oldest is forgotten first, and warned about again if it returns.
const WARNED_SETS: usize = 1024;

/// The fingerprints of the documents whose skipped keys were warned about, oldest first.
static WARNED: Mutex<WarnedSets> = Mutex::new(WarnedSets::new(WARNED_SETS));

/// Whether the skipped keys of the document with this fingerprint are news to this process.
/// Never waits for the lock: a thread that finds it held says no (its warning comes at a later
/// parse), and a child forked while a parent's thread held it cannot deadlock on it.
fn first_sight(fingerprint: u64) -> bool {
    match WARNED.try_lock() {
        Ok(mut warned) => warned.first_sight(fingerprint),
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().first_sight(fingerprint),
        Err(TryLockError::WouldBlock) => false,
    }
}

/// A bounded set of fingerprints that forgets the oldest first.
struct WarnedSets {
    order: VecDeque<u64>,
    capacity: usize,
}

impl WarnedSets {
    const fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Records `fingerprint`; true if it was not already recorded.
    fn first_sight(&mut self, fingerprint: u64) -> bool {
        if self.order.contains(&fingerprint) {
            return false;
        }
        if self.order.len() >= self.capacity {
            self.order.pop_front();
        }
        self.order.push_back(fingerprint);
        true
    }
}

/// A parsed JSON Web Key Set: kid → verifying keys, with the raw document kept for shared tiers.
///
/// Built once per fetch; a verification only looks keys up. Bad keys are skipped (one bad key
/// never breaks the set); a document with no usable key is refused as a whole.
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<Box<str>, Vec<usize>>,
    /// Keys by certificate thumbprint; empty unless keys carry `x5c` or `x5t` members.
    by_x5t: HashMap<[u8; 20], Vec<usize>>,
    by_x5t_s256: HashMap<[u8; 32], Vec<usize>>,
    skipped: Vec<SkippedKey>,
    raw: Bytes,
    fingerprint: u64,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("skipped", &self.skipped.len())
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish()
    }
}

#[derive(Deserialize)]
struct RawSet<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

/// The JWK members jwkstash reads. Unknown members are ignored; duplicates of these are refused.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
    /// Any JSON value when present (`null` included), so that a key with an `issuer` that is
    /// not a string is skipped under its `kid`.
    #[serde(default, deserialize_with = "present")]
    issuer: Option<serde_json::Value>,
    x5c: Option<Vec<String>>,
    x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// A member's value whatever its type, `null` included: `Some` whenever the member is present.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

impl RawJwk {
    fn has_private_members(&self) -> bool {
        [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth,
        ]
        .iter()
        .any(|member| member.is_some())
    }
}

impl KeySet {
    /// Parses a JWKS document.
    ///
    /// Refuses the document when it is not a JSON object with a `keys` array, or when no key in
    /// it is usable. Individual bad keys are skipped and listed in [`skipped`](Self::skipped);
    /// each is logged as a warning the first time this process parses the document (by its
    /// [`fingerprint`](Self::fingerprint); the last 1,024 such documents are remembered), and
    /// at debug level at every later parse.
    pub fn parse(raw: impl Into<Bytes>) -> Result<Self, KeySetError> {
        let raw = raw.into();
        let (keys, skipped) = Self::explain(&raw)?;
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey { skipped });
        }
        let fingerprint = short_hash([raw.as_ref()]);
        // A set is parsed on every read of a shared or snapshot tier, twice in a `Failover`,
        // at every poll for the fleet's lease: its skipped keys are news once per process.
        if !skipped.is_empty() && first_sight(fingerprint) {
            for skip in &skipped {
                tracing::warn!(kid = ?skip.kid, reason = %skip.reason, "skipped a key of the JWKS");
            }
        } else {
            for skip in &skipped {
                tracing::debug!(kid = ?skip.kid, reason = %skip.reason, "skipped a key of the JWKS");
            }
        }
        let mut by_kid: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut by_x5t: HashMap<[u8; 20], Vec<usize>> = HashMap::new();
        let mut by_x5t_s256: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid {
                by_kid.entry(kid.clone()).or_default().push(index);
            }
            if let Some(x5t) = key.x5t {
                by_x5t.entry(x5t).or_default().push(index);
            }
            if let Some(x5t_s256) = key.x5t_s256 {
                by_x5t_s256.entry(x5t_s256).or_default().push(index);
            }
        }
        Ok(Self {
            keys,
            by_kid,
            by_x5t,
            by_x5t_s256,
            skipped,
            raw,
            fingerprint,
        })
    }

    /// Every key of a JWKS document, usable or skipped with its reason, for diagnostics (the
    /// `jwkstash keys` command). Unlike [`parse`](Self::parse) it accepts a document without a
    /// usable key.
    pub fn explain(raw: &[u8]) -> Result<(Vec<VerifyingKey>, Vec<SkippedKey>), KeySetError> {
        let document: RawSet<'_> = serde_json::from_slice(raw)
            .map_err(|error| KeySetError::NotAKeySet(error.to_string()))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for raw_key in document.keys {
            match parse_key(raw_key) {
                Ok(_) if keys.len() >= MAX_KEYS => skipped.push(SkippedKey {
                    kid: None,
                    reason: SkipReason::TooManyKeys,
                }),
                Ok(key) => keys.push(key),
                Err(skip) => skipped.push(skip),
            }
        }
        Ok((keys, skipped))
    }

    /// The key that verifies a token with this `kid` (if any) and algorithm.
    ///
    /// * With a `kid`: the key with that kid whose type fits `alg`; [`InvalidToken::UnknownKid`]
    ///   if none has the kid, [`InvalidToken::AmbiguousKey`] if several keys of the type share it,
    ///   [`InvalidToken::AlgorithmMismatch`] if the key does not accept `alg`.
    /// * Without a `kid`: the set's only key of the algorithm's family, if it accepts `alg`;
    ///   otherwise [`InvalidToken::MissingKid`] (at most one signature check per token).
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, InvalidToken> {
        match kid {
            // Looked up by `&str`: no owned key id is built for a lookup.
            Some(kid) => self.pick(self.by_kid.get(kid), alg),
            None => self.find_by(None, alg),
        }
    }

    /// [`find`](Self::find) by any key identifier: a `kid` or a certificate thumbprint.
    pub(crate) fn find_by(
        &self,
        id: Option<&KeyId>,
        alg: Algorithm,
    ) -> Result<&VerifyingKey, InvalidToken> {
        let Some(id) = id else {
            // Only when the set has a single key of the algorithm's family (and it accepts
            // the algorithm): never a guess between keys.
            let mut of_family = self.keys.iter().filter(|key| key.kind.fits(alg));
            return match (of_family.next(), of_family.next()) {
                (Some(key), None) if key.accepts(alg) => Ok(key),
                _ => Err(InvalidToken::MissingKid),
            };
        };
        self.pick(self.indices(id), alg)
    }

    /// The one key among `indices` (the keys of one identifier) that verifies `alg`.
    fn pick(
        &self,
        indices: Option<&Vec<usize>>,
        alg: Algorithm,
    ) -> Result<&VerifyingKey, InvalidToken> {
        let indices = indices.ok_or(InvalidToken::UnknownKid)?;
        let mut of_type = indices
            .iter()
            .map(|&i| &self.keys[i])
            .filter(|key| key.kind.fits(alg));
        let key = match (of_type.next(), of_type.next()) {
            (Some(key), None) => key,
            (Some(_), Some(_)) => return Err(InvalidToken::AmbiguousKey),
            (None, _) => return Err(InvalidToken::AlgorithmMismatch),
        };
        if indices
            .iter()
            .filter(|&&i| self.keys[i].kind.same_type(key.kind))
            .count()
            > 1
        {
            return Err(InvalidToken::AmbiguousKey);
        }
        if key.accepts(alg) {
            Ok(key)
        } else {
            Err(InvalidToken::AlgorithmMismatch)
        }
    }

    /// Whether any key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Whether any key has this identifier.
    pub(crate) fn contains(&self, id: &KeyId) -> bool {
        self.indices(id).is_some()
    }

    fn indices(&self, id: &KeyId) -> Option<&Vec<usize>> {
        match id {
            KeyId::Kid(kid) => self.by_kid.get(kid),
            KeyId::X5tS256(thumbprint) => self.by_x5t_s256.get(thumbprint),
            KeyId::X5t(thumbprint) => self.by_x5t.get(thumbprint),
        }
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The keys that were left out, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The document as fetched.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// A short hash of the document: equal documents have equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

impl CacheValue for KeySet {
    fn to_bytes(&self) -> Vec<u8> {
        self.raw.to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::parse(Bytes::copy_from_slice(bytes)).map_err(|error| DecodeError(error.to_string()))
    }
}

fn parse_key(raw: &RawValue) -> Result<VerifyingKey, SkippedKey> {
    let skip = |kid: Option<&String>, reason| SkippedKey {
        kid: kid.filter(|kid| kid.len() <= MAX_KID_BYTES).cloned(),
        reason,
    };
    let jwk: RawJwk =
        serde_json::from_str(raw.get()).map_err(|_| skip(None, SkipReason::Malformed))?;
    let kid = jwk.kid.as_ref();
    let reason = |reason| skip(kid, reason);
    if kid.is_some_and(|kid| kid.len() > MAX_KID_BYTES) {
        return Err(reason(SkipReason::KidTooLong));
    }
    if jwk.kty == "oct" || jwk.k.is_some() {
        return Err(reason(SkipReason::SymmetricKey));
    }
    if jwk.has_private_members() {
        return Err(reason(SkipReason::PrivateKey));
    }
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return Err(reason(SkipReason::NotForSignatures));
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err(reason(SkipReason::NoVerifyOperation));
    }
    // A present `issuer` binds the key; one that is not a string of 1 to 1024 bytes (`null`
    // among them) binds it to nothing readable, so the key is skipped, never left unbound.
    let issuer = match &jwk.issuer {
        None => None,
        Some(serde_json::Value::String(issuer))
            if !issuer.is_empty() && issuer.len() <= MAX_KEY_ISSUER_BYTES =>
        {
            Some(issuer.as_str())
        }
        Some(_) => return Err(reason(SkipReason::Malformed)),
    };
    if !matches!(jwk.kty.as_str(), "RSA" | "EC" | "OKP") {
        return Err(reason(SkipReason::UnsupportedKeyType));
    }
    let leaf = jwk
        .x5c
        .as_deref()
        .map(certificate::leaf)
        .transpose()
        .map_err(reason)?;
    let certified = leaf.as_ref().map(|leaf| Material::certified(&leaf.key));
    let material = match (Material::of_members(&jwk).map_err(reason)?, certified) {
        (Some(members), Some(certified)) if members != certified => {
            return Err(reason(SkipReason::CertificateMismatch));
        }
        (Some(members), _) => members,
        // Only `x5c`: every member present must agree with the certificate's key.
        (None, Some(certified)) if certified.agrees_with(&jwk) => certified,
        (None, Some(_)) => return Err(reason(SkipReason::CertificateMismatch)),
        (None, None) => return Err(reason(SkipReason::Malformed)),
    };
    if !jwk
        .key_ops
        .as_ref()
        .is_none_or(|ops| material.takes_part_in(ops))
    {
        return Err(reason(SkipReason::KeyOperationsMismatch));
    }
    let (kind, key) = material.verifying_key().map_err(reason)?;
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match parse_asymmetric(name) {
            Some(alg) if kind.fits(alg) => Some(alg),
            _ => return Err(reason(SkipReason::UnsupportedAlgorithm)),
        },
    };
    let x5t = thumbprint_member::<20>(jwk.x5t.as_ref(), leaf.as_ref().map(|leaf| leaf.x5t))
        .map_err(reason)?;
    let x5t_s256 = thumbprint_member::<32>(
        jwk.x5t_s256.as_ref(),
        leaf.as_ref().map(|leaf| leaf.x5t_s256),
    )
    .map_err(reason)?;
    Ok(VerifyingKey {
        kid: jwk.kid.map(String::into_boxed_str),
        kind,
        alg,
        key,
        thumbprint: material.thumbprint(),
        issuer: issuer.map(Box::from),
        x5t,
        x5t_s256,
    })
}

/// A certificate thumbprint: the certificate's own when the JWK has `x5c` (a stated one must
/// equal it), else the one the JWK states.
fn thumbprint_member<const N: usize>(
    stated: Option<&String>,
    computed: Option<[u8; N]>,
) -> Result<Option<[u8; N]>, SkipReason> {
    let stated = match stated {
        None => None,
        Some(_) => {
            Some(<[u8; N]>::try_from(decode_member(stated)?).map_err(|_| SkipReason::Malformed)?)
        }
    };
    match (stated, computed) {
        (Some(stated), Some(computed)) if stated != computed => {
            Err(SkipReason::CertificateMismatch)
        }
        (stated, computed) => Ok(computed.or(stated)),
    }
}

/// A public key's components, from a JWK's members or from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Material {
    pub(crate) kty: &'static str,
    crv: &'static str,
    n: Vec<u8>,
    e: Vec<u8>,
    x: Vec<u8>,
    y: Vec<u8>,
}

impl Material {
    /// The members of a certificate's key.
    fn certified(key: &certificate::CertifiedKey) -> Self {
        match key {
            certificate::CertifiedKey::Rsa { n, e } => Self::rsa(n.clone(), e.clone()),
            certificate::CertifiedKey::Ec { crv, x, y } => Self::ec(crv, x.clone(), y.clone()),
            certificate::CertifiedKey::Okp { crv, x } => Self::okp(crv, x.clone()),
        }
    }

    pub(crate) fn rsa(n: Vec<u8>, e: Vec<u8>) -> Self {
        Self {
            kty: "RSA",
            crv: "",
            n: strip_leading_zeros(&n).to_vec(),
            e: strip_leading_zeros(&e).to_vec(),
            x: Vec::new(),
            y: Vec::new(),
        }
    }

    pub(crate) fn ec(crv: &'static str, x: Vec<u8>, y: Vec<u8>) -> Self {
        Self {
            kty: "EC",
            crv,
            n: Vec::new(),
            e: Vec::new(),
            x,
            y,
        }
    }

    pub(crate) fn okp(crv: &'static str, x: Vec<u8>) -> Self {
        Self {
            kty: "OKP",
            crv,
            n: Vec::new(),
            e: Vec::new(),
            x,
            y: Vec::new(),
        }
    }

    /// The key the JWK's members give, `None` if it has none (its key is in `x5c`).
    fn of_members(jwk: &RawJwk) -> Result<Option<Self>, SkipReason> {
        if [&jwk.n, &jwk.e, &jwk.x, &jwk.y]
            .iter()
            .all(|member| member.is_none())
            && jwk.x5c.is_some()
        {
            return Ok(None);
        }
        let material = match jwk.kty.as_str() {
            "RSA" => Self::rsa(
                decode_member(jwk.n.as_ref())?,
                decode_member(jwk.e.as_ref())?,
            ),
            "EC" => {
                let crv = match jwk.crv.as_deref() {
                    Some("P-256") => "P-256",
                    Some("P-384") => "P-384",
                    Some("P-521") => "P-521",
                    Some(_) => return Err(SkipReason::UnsupportedCurve),
                    None => return Err(SkipReason::Malformed),
                };
                Self::ec(
                    crv,
                    decode_member(jwk.x.as_ref())?,
                    decode_member(jwk.y.as_ref())?,
                )
            }
            _ => {
                match jwk.crv.as_deref() {
                    Some("Ed25519") => {}
                    Some(_) => return Err(SkipReason::UnsupportedCurve),
                    None => return Err(SkipReason::Malformed),
                }
                Self::okp("Ed25519", decode_member(jwk.x.as_ref())?)
            }
        };
        Ok(Some(material))
    }

    /// Whether the members of a JWK that gives its key only as `x5c` agree with this key (the
    /// certificate's): its `kty`, and its `crv` if it states one. RSA has no curve: a `crv` on an
    /// RSA key is a member RSA does not define, ignored as for a key given by its members.
    fn agrees_with(&self, jwk: &RawJwk) -> bool {
        self.kty == jwk.kty
            && (self.kty == "RSA" || jwk.crv.as_deref().is_none_or(|crv| crv == self.crv))
    }

    /// Whether a key of this type takes part in every operation of `key_ops` (RFC 7517 §4.3)
    /// that it names: `sign` and `verify` for every type; the encryption and key wrapping
    /// operations for RSA; key agreement (`deriveKey`, `deriveBits`: ECDH) for EC. Ed25519
    /// only signs (X25519 is another key). Values RFC 7517 does not list are left to whoever
    /// defined them.
    fn takes_part_in(&self, ops: &[String]) -> bool {
        ops.iter().all(|op| match op.as_str() {
            "encrypt" | "decrypt" | "wrapKey" | "unwrapKey" => self.kty == "RSA",
            "deriveKey" | "deriveBits" => self.kty == "EC",
            _ => true,
        })
    }

    /// A short hash of the components: equal keys have equal thumbprints.
    fn thumbprint(&self) -> u64 {
        short_hash([
            self.kty.as_bytes(),
            b"\0",
            self.crv.as_bytes(),
            b"\0",
            &self.n,
            b"\0",
            &self.e,
            b"\0",
            &self.x,
            b"\0",
            &self.y,
        ])
    }

    /// The checked key: sizes, exponent, curve point.
    fn verifying_key(&self) -> Result<(KeyKind, Key), SkipReason> {
        match self.kty {
            "RSA" => rsa_key(&self.n, &self.e),
            "EC" => ec_key(self.crv, &self.x, &self.y),
            _ => okp_key(&self.x),
        }
    }
}

/// The first 8 bytes of the SHA-256 of `parts`, as a number.
fn short_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

fn decode_member(value: Option<&String>) -> Result<Vec<u8>, SkipReason> {
    let value = value.ok_or(SkipReason::Malformed)?;
    JWK_BASE64.decode(value).map_err(|_| SkipReason::Malformed)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn rsa_key(n: &[u8], e: &[u8]) -> Result<(KeyKind, Key), SkipReason> {
    let bits = match n.first() {
        Some(first) => (n.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(SkipReason::RsaSize);
    }
    let exponent = match e.len() {
        1..=4 => e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        _ => 0,
    };
    if exponent < 3 || exponent % 2 == 0 {
        return Err(SkipReason::RsaExponent);
    }
    Ok((
        KeyKind::Rsa { bits },
        Key::Jwt(DecodingKey::from_rsa_raw_components(n, e)),
    ))
}

fn ec_key(crv: &str, x: &[u8], y: &[u8]) -> Result<(KeyKind, Key), SkipReason> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ECDSA_P521_SHA512_FIXED,
    };
    let (kind, width, curve) = match crv {
        "P-256" => (KeyKind::EcP256, 32, &ECDSA_P256_SHA256_FIXED),
        "P-384" => (KeyKind::EcP384, 48, &ECDSA_P384_SHA384_FIXED),
        _ => (KeyKind::EcP521, 66, &ECDSA_P521_SHA512_FIXED),
    };
    if x.len() != width || y.len() != width {
        return Err(SkipReason::BadCoordinates);
    }
    let mut point = Vec::with_capacity(1 + 2 * width);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    // Checked now, not at the first signature: a key off its curve is no key, and saying so
    // here names it in the parse report (`jwkstash keys`) instead of failing as a bad signature.
    let parsed = ParsedPublicKey::new(curve, &point).map_err(|_| SkipReason::PointNotOnCurve)?;
    let key = match kind {
        // jsonwebtoken has no ES512: the parsed key verifies it.
        KeyKind::EcP521 => Key::P521(parsed),
        _ => Key::Jwt(DecodingKey::from_ec_der(&point)),
    };
    Ok((kind, key))
}

fn okp_key(x: &[u8]) -> Result<(KeyKind, Key), SkipReason> {
    if x.len() != 32 {
        return Err(SkipReason::BadCoordinates);
    }
    Ok((KeyKind::Ed25519, Key::Jwt(DecodingKey::from_ed_der(x))))
}

#[cfg(test)]
mod tests {
    use super::WarnedSets;

    #[test]
    fn the_warned_sets_are_bounded_and_forget_the_oldest_first() {
        let mut warned = WarnedSets::new(3);
        assert!(warned.first_sight(1));
        assert!(!warned.first_sight(1));
        for fingerprint in 2..=4 {
            assert!(warned.first_sight(fingerprint));
        }
        assert_eq!(warned.order.len(), 3);
        // 1 was forgotten (the oldest); 2, 3 and 4 are remembered.
        assert!(!warned.first_sight(4));
        assert!(!warned.first_sight(2));
        assert!(warned.first_sight(1));
        assert_eq!(warned.order.len(), 3);
    }
}
