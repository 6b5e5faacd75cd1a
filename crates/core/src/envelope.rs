//! The versioned envelope in which an entry is stored, with an optional HMAC-SHA256.
//!
//! ```text
//! "JWKS" | version '1' | mac flag '0'/'1' | fetched_at, fresh_until, usable_until
//! (milliseconds since the epoch, 16 lowercase hex digits each) | key (u16 length + bytes)
//! | etag (u16 length + bytes) | value (u32 length + bytes) | HMAC-SHA256 (32 bytes, if flagged)
//! ```
//!
//! Shared by the backends that store entries as bytes (jwkstash-redis, jwkstash-file, and
//! any backend of yours that stores bytes): [`seal`] on write, [`open`] on read, and
//! [`Refusals`] to count and log what was refused.
//!
//! The times are ASCII at fixed offsets so that a store-side script (Redis's write-if-newer)
//! can read `fetched_at`. The storage key is inside the authenticated bytes: an entry copied
//! under another key is refused. Everything read back is checked before it is trusted: a
//! reader refuses entries fetched in the future (beyond its clock skew), with times out of
//! order, expired, truncated, of another version, or with a bad tag.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::{Entry, from_unix_millis, unix_millis};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"JWKS";
const VERSION: u8 = b'1';
const TIMES_AT: usize = 6;
const TIME_DIGITS: usize = 16;
const HEADER_LEN: usize = TIMES_AT + 3 * TIME_DIGITS;
const MAC_LEN: usize = 32;

/// Why a stored value was not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The bytes do not start with the envelope's magic.
    #[error("not a jwkstash envelope")]
    NotAnEnvelope,
    /// A version this reader does not know.
    #[error("unknown envelope version")]
    UnknownVersion,
    /// Truncated, or a length or field that does not parse.
    #[error("truncated or malformed envelope")]
    Malformed,
    /// The envelope names another storage key (copied from another entry).
    #[error("envelope stored under another key")]
    WrongKey,
    /// No tag, and the reader has a secret.
    #[error("missing authentication tag")]
    MissingMac,
    /// A tag that none of the reader's secrets made.
    #[error("bad authentication tag")]
    BadMac,
    /// Fetched in the future, or times out of order.
    #[error("implausible times")]
    BadTimes,
    /// Past `usable_until`.
    #[error("expired")]
    Expired,
    /// Longer than the backend's limit.
    #[error("value over the size limit")]
    TooLarge,
    /// Stored as another type than bytes (a Redis hash, a directory, ...).
    #[error("not a byte string")]
    WrongType,
    /// The value inside does not decode ([`CacheValue::from_bytes`](crate::CacheValue)).
    #[error("value does not decode")]
    BadValue,
    /// A file that another user owns or may write (when no secret authenticates it).
    #[error("writable by another user")]
    NotPrivate,
}

impl Refused {
    /// Every kind, in the order of their counters.
    pub const ALL: [Self; 12] = [
        Self::NotAnEnvelope,
        Self::UnknownVersion,
        Self::Malformed,
        Self::WrongKey,
        Self::MissingMac,
        Self::BadMac,
        Self::BadTimes,
        Self::Expired,
        Self::TooLarge,
        Self::WrongType,
        Self::BadValue,
        Self::NotPrivate,
    ];

    /// A short stable name, for counters and logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotAnEnvelope => "not_an_envelope",
            Self::UnknownVersion => "unknown_version",
            Self::Malformed => "malformed",
            Self::WrongKey => "wrong_key",
            Self::MissingMac => "missing_mac",
            Self::BadMac => "bad_mac",
            Self::BadTimes => "bad_times",
            Self::Expired => "expired",
            Self::TooLarge => "too_large",
            Self::WrongType => "wrong_type",
            Self::BadValue => "bad_value",
            Self::NotPrivate => "not_private",
        }
    }
}

impl Refused {
    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|kind| *kind == self)
            .unwrap_or_default()
    }
}

/// Counts refused values by kind and logs each: at warn level the first time for each kind,
/// then at debug (a planted value read on every request must not flood the log).
#[derive(Debug, Default)]
pub struct Refusals {
    /// Kinds already logged at warn level (one bit each).
    logged: AtomicU32,
    counts: [AtomicU64; Refused::ALL.len()],
}

impl Refusals {
    /// Counts and logs a refusal of what `backend` read under `key`. (A backend whose entries
    /// expire in the normal course, like Redis, does not report [`Refused::Expired`].)
    pub fn refuse(&self, backend: &'static str, key: &str, reason: Refused) {
        let index = reason.index();
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let bit = 1u32 << index;
        if self.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(%reason, key, backend, "refused a stored value; treated as a miss");
        } else {
            tracing::debug!(%reason, key, backend, "refused a stored value");
        }
    }

    /// Refusals so far by kind ([`Refused::code`]), every kind listed, refused or not.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        Refused::ALL
            .iter()
            .zip(&self.counts)
            .map(|(reason, count)| (reason.code(), count.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The shortest HMAC secret a backend accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// An HMAC secret that never appears in `Debug` or `Display`.
#[derive(Clone)]
pub struct Secret(std::sync::Arc<[u8]>);

impl Secret {
    /// Wraps the secret's bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into().into())
    }

    /// The secret's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether it is at least [`MIN_SECRET_BYTES`] long.
    pub fn is_strong(&self) -> bool {
        self.0.len() >= MIN_SECRET_BYTES
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A backend's HMAC secrets: the current one, which tags what is written, and any being
/// rotated out, which are still accepted on read.
#[derive(Clone, Default)]
pub struct Secrets {
    current: Option<Secret>,
    previous: Vec<Secret>,
}

/// Why a backend's [`Secrets`] cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// A secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("an HMAC secret must be at least {MIN_SECRET_BYTES} bytes")]
    Weak,
    /// Previous secrets were given without a current one to write with.
    #[error("a previous HMAC secret needs a current one to write with")]
    NoCurrent,
}

impl Secrets {
    /// Sets the current secret.
    pub fn set_current(&mut self, secret: impl Into<Vec<u8>>) {
        self.current = Some(Secret::new(secret));
    }

    /// Adds a secret being rotated out.
    pub fn add_previous(&mut self, secret: impl Into<Vec<u8>>) {
        self.previous.push(Secret::new(secret));
    }

    /// Whether a current secret was set.
    pub fn has_current(&self) -> bool {
        self.current.is_some()
    }

    /// Checks them (every secret strong, previous ones only beside a current one) and returns
    /// them current first, as [`open`] and [`seal`] take them. Empty when none was set.
    pub fn checked(self) -> Result<Vec<Secret>, SecretsError> {
        let all: Vec<Secret> = self.current.iter().chain(&self.previous).cloned().collect();
        if !all.iter().all(Secret::is_strong) {
            return Err(SecretsError::Weak);
        }
        if self.current.is_none() && !self.previous.is_empty() {
            return Err(SecretsError::NoCurrent);
        }
        Ok(all)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("current", &self.current.is_some())
            .field("previous", &self.previous.len())
            .finish()
    }
}

/// The fields of an envelope, borrowed from the stored bytes.
#[derive(Debug)]
#[non_exhaustive]
pub struct Opened<'a> {
    /// When the upstream produced the value.
    pub fetched_at: SystemTime,
    /// Until when the value is fresh.
    pub fresh_until: SystemTime,
    /// The end of the value's life.
    pub usable_until: SystemTime,
    /// The upstream's entity tag.
    pub etag: Option<&'a str>,
    /// The value's bytes, for [`CacheValue::from_bytes`](crate::CacheValue).
    pub value: &'a [u8],
}

impl Opened<'_> {
    /// The entry, around the decoded `value`.
    pub fn into_entry<V>(self, value: V) -> Entry<V> {
        Entry::new(value, self.fetched_at, self.fresh_until, self.usable_until).with_etag(self.etag)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `bytes` under `secret` (HMAC takes keys of any length, so this is `None`
/// only if the crate ever changes its mind).
fn mac(secret: &[u8], bytes: &[u8]) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    mac.update(bytes);
    Some(mac)
}

/// Seals an entry stored under `key`; `None` if it cannot be authenticated or a length does
/// not fit its field (a key or etag of 64 KiB or more, a value of 4 GiB or more).
pub fn seal<V>(
    key: &str,
    entry: &Entry<V>,
    value: &[u8],
    secret: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let etag = entry.etag.as_deref().unwrap_or_default().as_bytes();
    let mut out =
        Vec::with_capacity(HEADER_LEN + 8 + key.len() + etag.len() + value.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(if secret.is_some() { b'1' } else { b'0' });
    for time in [entry.fetched_at, entry.fresh_until, entry.usable_until] {
        out.extend_from_slice(format!("{:016x}", unix_millis(time)).as_bytes());
    }
    // Each length must fit its field: an entry that does not is not sealed (the write is
    // skipped), never written with a truncated length.
    out.extend_from_slice(&u16::try_from(key.len()).ok()?.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&u16::try_from(etag.len()).ok()?.to_be_bytes());
    out.extend_from_slice(etag);
    out.extend_from_slice(&u32::try_from(value.len()).ok()?.to_be_bytes());
    out.extend_from_slice(value);
    if let Some(secret) = secret {
        let tag = mac(secret, &out)?.finalize().into_bytes();
        out.extend_from_slice(&tag);
    }
    Some(out)
}

/// A cursor over untrusted bytes that never reads out of bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        if self.0.len() < n {
            return Err(Refused::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn length_prefixed(&mut self, width: usize) -> Result<&'a [u8], Refused> {
        let len = self
            .take(width)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        self.take(len)
    }
}

fn time(digits: &[u8]) -> Result<SystemTime, Refused> {
    let digits = std::str::from_utf8(digits).map_err(|_| Refused::Malformed)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refused::Malformed);
    }
    u64::from_str_radix(digits, 16)
        .map(from_unix_millis)
        .map_err(|_| Refused::Malformed)
}

/// Opens and checks an envelope read from `key` at `now`, with the reader's `secrets` (the
/// current one first, then those being rotated out; none: the envelope is not authenticated).
/// An entry fetched more than `skew` after `now` is refused.
pub fn open<'a>(
    key: &str,
    bytes: &'a [u8],
    secrets: &[impl AsRef<[u8]>],
    now: SystemTime,
    skew: Duration,
) -> Result<Opened<'a>, Refused> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(Refused::NotAnEnvelope);
    }
    if bytes[4] != VERSION {
        return Err(Refused::UnknownVersion);
    }
    let has_mac = match bytes[5] {
        b'0' => false,
        b'1' => true,
        _ => return Err(Refused::Malformed),
    };
    let signed = match (has_mac, secrets.is_empty()) {
        // Any of the accepted secrets (the current one and those being rotated out).
        (true, false) => {
            let split = bytes.len().checked_sub(MAC_LEN).ok_or(Refused::Malformed)?;
            let (signed, tag) = bytes.split_at(split);
            let valid = secrets.iter().any(|secret| {
                mac(secret.as_ref(), signed).is_some_and(|mac| mac.verify_slice(tag).is_ok())
            });
            if !valid {
                return Err(Refused::BadMac);
            }
            signed
        }
        (false, false) => return Err(Refused::MissingMac),
        // Without a secret (opted out by name) there is nothing to check a tag against.
        (true, true) => &bytes[..bytes.len().saturating_sub(MAC_LEN)],
        (false, true) => bytes,
    };
    let mut reader = Reader(&signed[TIMES_AT..]);
    let fetched_at = time(reader.take(TIME_DIGITS)?)?;
    let fresh_until = time(reader.take(TIME_DIGITS)?)?;
    let usable_until = time(reader.take(TIME_DIGITS)?)?;
    if reader.length_prefixed(2)? != key.as_bytes() {
        return Err(Refused::WrongKey);
    }
    let etag = reader.length_prefixed(2)?;
    let value = reader.length_prefixed(4)?;
    if !reader.0.is_empty() {
        return Err(Refused::Malformed);
    }
    let etag = match etag {
        [] => None,
        etag => Some(std::str::from_utf8(etag).map_err(|_| Refused::Malformed)?),
    };
    if fetched_at > now + skew || fetched_at > fresh_until || fresh_until > usable_until {
        return Err(Refused::BadTimes);
    }
    if now >= usable_until {
        return Err(Refused::Expired);
    }
    Ok(Opened {
        fetched_at,
        fresh_until,
        usable_until,
        etag,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        from_unix_millis(1_893_456_000_000)
    }

    fn entry() -> Entry<()> {
        let now = now();
        Entry::new(
            (),
            now,
            now + Duration::from_secs(600),
            now + Duration::from_secs(4200),
        )
        .with_etag(Some("\"abc\""))
    }

    #[test]
    fn secrets_are_checked_current_first() {
        assert_eq!(Secrets::default().checked().map(|s| s.len()), Ok(0));
        let mut secrets = Secrets::default();
        secrets.add_previous([1; MIN_SECRET_BYTES]);
        assert!(!secrets.has_current());
        assert_eq!(
            secrets.clone().checked().err(),
            Some(SecretsError::NoCurrent)
        );
        secrets.set_current([2; MIN_SECRET_BYTES]);
        assert!(secrets.has_current());
        let checked = secrets.clone().checked().unwrap_or_default();
        let bytes: Vec<&[u8]> = checked.iter().map(Secret::bytes).collect();
        let expected: [&[u8]; 2] = [&[2; MIN_SECRET_BYTES], &[1; MIN_SECRET_BYTES]];
        assert_eq!(bytes, expected);
        secrets.add_previous([3; MIN_SECRET_BYTES - 1]);
        assert_eq!(secrets.checked().err(), Some(SecretsError::Weak));
        let mut weak_current = Secrets::default();
        weak_current.set_current([4; MIN_SECRET_BYTES - 1]);
        assert_eq!(weak_current.checked().err(), Some(SecretsError::Weak));
        assert_eq!(
            format!("{:?}", Secrets::default()),
            "Secrets { current: false, previous: 0 }"
        );
    }

    #[test]
    fn lengths_that_do_not_fit_their_field_are_not_sealed() {
        let long_etag = entry().with_etag(Some("e".repeat(usize::from(u16::MAX) + 1)));
        assert!(seal("k", &long_etag, b"value", Some(b"secret")).is_none());
        let long_key = "k".repeat(usize::from(u16::MAX) + 1);
        assert!(seal(&long_key, &entry(), b"value", None).is_none());
        let fits = entry().with_etag(Some("e".repeat(usize::from(u16::MAX))));
        assert!(seal("k", &fits, b"value", None).is_some());
    }

    const SKEW: Duration = Duration::from_secs(5);
    /// No secret: an unauthenticated reader.
    const NO_SECRET: &[&[u8]] = &[];

    #[test]
    fn round_trip_with_and_without_mac() {
        for secret in [None, Some(&b"secret"[..])] {
            let sealed = seal("k", &entry(), b"value", secret).unwrap_or_default();
            let opened =
                open("k", &sealed, secret.as_slice(), now(), SKEW).map_err(|e| e.to_string());
            let opened = opened.as_ref().map(|o| (o.value, o.etag, o.fetched_at));
            assert_eq!(opened, Ok((&b"value"[..], Some("\"abc\""), now())));
        }
    }

    #[test]
    fn a_rotated_secret_is_accepted_beside_the_new_one_and_no_other() {
        let (old, new, stranger) = (&b"old secret"[..], &b"new secret"[..], &b"guess"[..]);
        let by_old = seal("k", &entry(), b"value", Some(old)).unwrap_or_default();
        let by_new = seal("k", &entry(), b"value", Some(new)).unwrap_or_default();
        for sealed in [&by_old, &by_new] {
            assert!(open("k", sealed, &[new, old], now(), SKEW).is_ok());
            assert_eq!(
                open("k", sealed, &[stranger], now(), SKEW).err(),
                Some(Refused::BadMac)
            );
        }
        assert_eq!(
            open("k", &by_old, &[new], now(), SKEW).err(),
            Some(Refused::BadMac)
        );
    }

    #[test]
    fn tampering_is_refused() {
        let secret = Some(&b"secret"[..]);
        let sealed = seal("k", &entry(), b"value", secret).unwrap_or_default();
        let mut flipped = sealed.clone();
        let at = flipped.len() - MAC_LEN - 1;
        flipped[at] ^= 1;
        assert_eq!(
            open("k", &flipped, secret.as_slice(), now(), SKEW).err(),
            Some(Refused::BadMac)
        );
        assert_eq!(
            open("k", &sealed, &[b"other"], now(), SKEW).err(),
            Some(Refused::BadMac)
        );
        assert_eq!(
            open("other", &sealed, secret.as_slice(), now(), SKEW).err(),
            Some(Refused::WrongKey)
        );
        let unsigned = seal("k", &entry(), b"value", None).unwrap_or_default();
        assert_eq!(
            open("k", &unsigned, secret.as_slice(), now(), SKEW).err(),
            Some(Refused::MissingMac)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let sealed = seal("k", &entry(), b"value", None).unwrap_or_default();
        for cut in 0..sealed.len() {
            assert!(
                open("k", &sealed[..cut], NO_SECRET, now(), SKEW).is_err(),
                "cut at {cut}"
            );
        }
        for bytes in [
            &b""[..],
            b"JWKS",
            b"JWKS2",
            &[0xff; 100],
            b"JWKS10zzzzzzzzzzzzzzzz",
        ] {
            assert!(open("k", bytes, NO_SECRET, now(), SKEW).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = open("k", &bytes, NO_SECRET, now(), SKEW);
            let _ = open("k", &bytes, &[b"secret"], now(), SKEW);
        }

        #[test]
        fn any_change_to_a_signed_envelope_is_refused(at in 0usize..200, flip in 1u8..=255) {
            let secret = Some(&b"secret"[..]);
            let mut sealed = seal("k", &entry(), b"value", secret).unwrap_or_default();
            let at = at % sealed.len();
            sealed[at] ^= flip;
            proptest::prop_assert!(open("k", &sealed, secret.as_slice(), now(), SKEW).is_err());
        }

        #[test]
        fn a_prefix_of_jwks_and_garbage_never_panics(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut bytes = b"JWKS1".to_vec();
            bytes.extend_from_slice(&tail);
            let _ = open("k", &bytes, NO_SECRET, now(), SKEW);
        }
    }

    #[test]
    fn a_value_shorter_than_the_header_is_not_an_envelope_and_a_longer_one_is_malformed() {
        let sealed = seal("k", &entry(), b"value", None).unwrap_or_default();
        assert_eq!(
            open("k", &sealed[..HEADER_LEN - 1], NO_SECRET, now(), SKEW).err(),
            Some(Refused::NotAnEnvelope)
        );
        assert_eq!(
            open("k", &sealed[..HEADER_LEN], NO_SECRET, now(), SKEW).err(),
            Some(Refused::Malformed)
        );
        assert_eq!(HEADER_LEN, 54, "the header's layout is the stored format");
    }

    #[test]
    fn keys_etags_and_values_longer_than_a_byte_of_length_round_trip() {
        let key = "k".repeat(300);
        let long = entry().with_etag(Some("e".repeat(70_000 % 65_536)));
        let value = vec![7u8; 70_000];
        for secret in [None, Some(&b"secret"[..])] {
            let sealed = seal(&key, &long, &value, secret).unwrap_or_default();
            let opened = open(&key, &sealed, secret.as_slice(), now(), SKEW);
            let opened = opened.map(|o| (o.value.len(), o.etag.map(str::len)));
            assert_eq!(opened, Ok((70_000, Some(70_000 % 65_536))));
        }
    }

    #[test]
    fn times_at_their_boundaries() {
        let seal_at = |fetched_at: SystemTime, fresh: u64, stale: u64| {
            let fresh_until = fetched_at + Duration::from_secs(fresh);
            let entry = Entry::new(
                (),
                fetched_at,
                fresh_until,
                fresh_until + Duration::from_secs(stale),
            );
            seal("k", &entry, b"v", None).unwrap_or_default()
        };
        let opens = |sealed: &[u8]| open("k", sealed, NO_SECRET, now(), SKEW).map(|_| ());
        // Fetched exactly `skew` ahead: allowed; a millisecond more: refused.
        assert_eq!(opens(&seal_at(now() + SKEW, 60, 60)), Ok(()));
        let beyond = now() + SKEW + Duration::from_millis(1);
        assert_eq!(opens(&seal_at(beyond, 60, 60)), Err(Refused::BadTimes));
        // A zero TTL and a zero max_stale are plausible; times out of order are not.
        assert_eq!(opens(&seal_at(now(), 0, 60)), Ok(()));
        assert_eq!(opens(&seal_at(now(), 60, 0)), Ok(()));
        let backwards = Entry::new(
            (),
            now(),
            now() - Duration::from_secs(1),
            now() + Duration::from_secs(60),
        );
        let sealed = seal("k", &backwards, b"v", None).unwrap_or_default();
        assert_eq!(opens(&sealed), Err(Refused::BadTimes));
        let inverted = Entry::new(
            (),
            now(),
            now() + Duration::from_secs(60),
            now() + Duration::from_secs(30),
        );
        let sealed = seal("k", &inverted, b"v", None).unwrap_or_default();
        assert_eq!(opens(&sealed), Err(Refused::BadTimes));
        // Usable until exactly now: expired.
        assert_eq!(
            opens(&seal_at(now() - Duration::from_secs(120), 60, 60)),
            Err(Refused::Expired)
        );
    }

    #[test]
    fn refusals_are_counted_by_kind_under_their_stable_codes() {
        let refusals = Refusals::default();
        let codes: Vec<&str> = Refused::ALL.iter().map(|kind| kind.code()).collect();
        assert_eq!(
            codes,
            [
                "not_an_envelope",
                "unknown_version",
                "malformed",
                "wrong_key",
                "missing_mac",
                "bad_mac",
                "bad_times",
                "expired",
                "too_large",
                "wrong_type",
                "bad_value",
                "not_private",
            ]
        );
        for (times, kind) in Refused::ALL.iter().enumerate() {
            for _ in 0..times {
                refusals.refuse("test", "k", *kind);
            }
        }
        let counts = refusals.counts();
        assert_eq!(counts.len(), Refused::ALL.len());
        for (times, kind) in Refused::ALL.iter().enumerate() {
            assert_eq!(counts[kind.code()], times as u64, "{kind}");
        }
    }

    /// Log lines, captured.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_kind_is_warned_about_once() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let refusals = Refusals::default();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                for kind in [Refused::BadMac, Refused::Expired, Refused::NotPrivate] {
                    refusals.refuse("test", "k", kind);
                }
            }
        });
        let log = String::from_utf8(captured.0.lock().map(|log| log.clone()).unwrap_or_default())
            .unwrap_or_default();
        let warnings: Vec<&str> = log.lines().filter(|line| line.contains(" WARN ")).collect();
        assert_eq!(warnings.len(), 3, "{log}");
        for code in [
            "bad authentication tag",
            "expired",
            "writable by another user",
        ] {
            assert_eq!(
                warnings.iter().filter(|line| line.contains(code)).count(),
                1,
                "{log}"
            );
        }
        assert_eq!(
            log.lines().filter(|line| line.contains("DEBUG")).count(),
            6,
            "{log}"
        );
    }

    #[test]
    fn a_secret_is_strong_from_16_bytes_and_never_shown() {
        assert!(!Secret::new(vec![1; 15]).is_strong());
        let secret = Secret::new(b"sixteen bytes!!!".to_vec());
        assert!(secret.is_strong());
        assert_eq!(secret.bytes(), b"sixteen bytes!!!");
        assert_eq!(secret.as_ref(), b"sixteen bytes!!!");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }

    #[test]
    fn implausible_times_are_refused() {
        let mut future = entry();
        future.fetched_at = now() + Duration::from_secs(60);
        future.fresh_until = future.fetched_at;
        let sealed = seal("k", &future, b"v", None).unwrap_or_default();
        assert_eq!(
            open("k", &sealed, NO_SECRET, now(), SKEW).err(),
            Some(Refused::BadTimes)
        );
        let sealed = seal("k", &entry(), b"v", None).unwrap_or_default();
        let later = now() + Duration::from_secs(5000);
        assert_eq!(
            open("k", &sealed, NO_SECRET, later, SKEW).err(),
            Some(Refused::Expired)
        );
    }
}
