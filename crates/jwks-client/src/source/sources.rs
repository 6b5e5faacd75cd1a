//! Key sources that are not one HTTP endpoint: a JWKS given inline or in a file
//! ([`StaticKeySource`]), a source with extra pinned keys ([`WithPinnedKeys`]), and a second
//! source for when the first fails ([`Failover`]). Each is a [`KeySource`], so it goes through
//! the cache stack and the fleet like any other.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use jwkstash_core::{FetchError, Fetched, KeySource, Validators};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::jose::error::KeySetError;
use crate::jose::keyset::KeySet;
use crate::source::fetcher::DEFAULT_MAX_BODY_BYTES;

/// A JWKS held by the application: inline (a string in the configuration) or in a file read
/// again at every refresh (a mounted secret that an operator updates). Parsed by the same
/// strict parser as fetched sets, when built and at every read.
#[derive(Debug, Clone)]
pub struct StaticKeySource {
    id: String,
    origin: Origin,
}

#[derive(Debug, Clone)]
enum Origin {
    Inline(Bytes),
    File(PathBuf),
}

impl StaticKeySource {
    /// A key set given as a JWKS document. Refused now if it has no usable key.
    pub fn from_json(jwks: impl Into<Bytes>) -> Result<Self, KeySetError> {
        let jwks = jwks.into();
        KeySet::parse(jwks.clone())?;
        Ok(Self {
            id: format!("static:{}", short_hex(&jwks)),
            origin: Origin::Inline(jwks),
        })
    }

    /// A key set read from the JWKS file at `path` (at most
    /// [`DEFAULT_MAX_BODY_BYTES`]), now and at every refresh. Refused now if the file cannot
    /// be read or has no usable key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeySetError> {
        let path = path.as_ref().to_path_buf();
        let body =
            read_bounded(&path).map_err(|error| KeySetError::Unreadable(error.to_string()))?;
        KeySet::parse(body)?;
        Ok(Self {
            id: format!("file:{}", path.display()),
            origin: Origin::File(path),
        })
    }
}

#[async_trait]
impl KeySource for StaticKeySource {
    fn id(&self) -> &str {
        &self.id
    }

    async fn fetch(&self, _: &Validators) -> Result<Fetched, FetchError> {
        let body = match &self.origin {
            Origin::Inline(body) => body.clone(),
            Origin::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_bounded(&path))
                    .await
                    .map_err(|error| FetchError::Other(Box::new(error)))?
                    .map_err(|error| match error {
                        ReadError::TooLarge => FetchError::TooLarge {
                            limit: DEFAULT_MAX_BODY_BYTES,
                        },
                        ReadError::Io(error) => FetchError::Other(Box::new(error)),
                    })?
            }
        };
        Ok(Fetched::Modified {
            body,
            etag: None,
            max_age: None,
        })
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("the file exceeds {DEFAULT_MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads at most [`DEFAULT_MAX_BODY_BYTES`] (one byte more tells a longer file).
fn read_bounded(path: &Path) -> Result<Bytes, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut body = Vec::new();
    file.take(DEFAULT_MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)?;
    if body.len() > DEFAULT_MAX_BODY_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(body.into())
}

/// A source whose every set also holds keys pinned by the application (a key the provider
/// does not publish yet, or a fallback key): merged into each fetched document under their own
/// kids. A fetched key with the kid of a pinned key is dropped, with a warning: the pinned key
/// is the one configured.
#[derive(Debug, Clone)]
pub struct WithPinnedKeys<S> {
    inner: S,
    pinned: Vec<Box<RawValue>>,
    pinned_kids: Vec<String>,
    id: String,
}

#[derive(Deserialize)]
struct RawKeys<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct KidOnly {
    kid: Option<String>,
}

impl<S: KeySource> WithPinnedKeys<S> {
    /// `inner`'s sets with the keys of the JWKS document `pinned` added. Refused now if
    /// `pinned` has no usable key; its unusable keys are left out.
    pub fn new(inner: S, pinned: &[u8]) -> Result<Self, KeySetError> {
        let set = KeySet::parse(Bytes::copy_from_slice(pinned))?;
        let document: RawKeys<'_> = serde_json::from_slice(pinned)
            .map_err(|error| KeySetError::NotAKeySet(error.to_string()))?;
        let usable: Vec<&str> = set.keys().iter().filter_map(|key| key.kid()).collect();
        let pinned: Vec<Box<RawValue>> = document
            .keys
            .iter()
            .filter(|raw| kid_of(raw).is_some_and(|kid| usable.contains(&kid.as_str())))
            .map(|raw| (*raw).to_owned())
            .collect();
        if pinned.len() != set.keys().len() {
            return Err(KeySetError::NotAKeySet(
                "every pinned key needs a kid of its own".into(),
            ));
        }
        let pinned_kids = usable.iter().map(|kid| (*kid).to_owned()).collect();
        let id = format!(
            "{}+pinned:{}",
            inner.id(),
            short_hex(pinned_bytes(&pinned).as_bytes())
        );
        Ok(Self {
            inner,
            pinned,
            pinned_kids,
            id,
        })
    }

    /// The fetched document with the pinned keys added.
    fn merge(&self, body: &[u8]) -> Result<Bytes, FetchError> {
        let document: RawKeys<'_> = serde_json::from_slice(body)
            .map_err(|error| FetchError::InvalidKeySet(error.to_string()))?;
        let mut keys: Vec<&RawValue> = Vec::with_capacity(document.keys.len() + self.pinned.len());
        for key in document.keys {
            match kid_of(key) {
                Some(kid) if self.pinned_kids.contains(&kid) => {
                    tracing::warn!(
                        source = self.inner.id(),
                        "a fetched key has a pinned key's kid; the pinned key is used"
                    );
                }
                _ => keys.push(key),
            }
        }
        keys.extend(self.pinned.iter().map(AsRef::as_ref));
        let merged = serde_json::to_vec(&serde_json::json!({ "keys": keys }))
            .map_err(|error| FetchError::InvalidKeySet(error.to_string()))?;
        Ok(merged.into())
    }
}

fn kid_of(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<KidOnly>(raw.get()).ok()?.kid
}

fn pinned_bytes(pinned: &[Box<RawValue>]) -> String {
    pinned
        .iter()
        .map(|key| key.get())
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl<S: KeySource> KeySource for WithPinnedKeys<S> {
    fn id(&self) -> &str {
        &self.id
    }

    async fn fetch(&self, validators: &Validators) -> Result<Fetched, FetchError> {
        match self.inner.fetch(validators).await? {
            Fetched::Modified {
                body,
                etag,
                max_age,
            } => Ok(Fetched::Modified {
                body: self.merge(&body)?,
                etag,
                max_age,
            }),
            not_modified @ Fetched::NotModified { .. } => Ok(not_modified),
        }
    }
}

/// Two sources for one key set: the primary, and the secondary when the primary fails (an
/// error, or a document without a usable key). Each fetch tries the primary first, so the
/// primary is used again as soon as it answers. Only when both fail does the verifier see a
/// failure (and back off).
#[derive(Debug)]
pub struct Failover<P, S> {
    primary: P,
    secondary: S,
    id: String,
    /// Whether the cached copy came from the secondary: its validators are not the primary's.
    from_secondary: AtomicBool,
}

impl<P: KeySource, S: KeySource> Failover<P, S> {
    /// `primary`, and `secondary` when it fails.
    pub fn new(primary: P, secondary: S) -> Self {
        let id = format!("failover({}|{})", primary.id(), secondary.id());
        Self {
            primary,
            secondary,
            id,
            from_secondary: AtomicBool::new(false),
        }
    }
}

/// Whether a fetch brought something the verifier can use.
fn usable(fetched: &Result<Fetched, FetchError>) -> Result<(), String> {
    match fetched {
        Ok(Fetched::Modified { body, .. }) => KeySet::parse(body.clone())
            .map(drop)
            .map_err(|error| error.to_string()),
        Ok(Fetched::NotModified { .. }) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

#[async_trait]
impl<P: KeySource, S: KeySource> KeySource for Failover<P, S> {
    fn id(&self) -> &str {
        &self.id
    }

    async fn fetch(&self, validators: &Validators) -> Result<Fetched, FetchError> {
        let from_secondary = self.from_secondary.load(Ordering::Acquire);
        // A validator is only meaningful to the source that issued it.
        let none = Validators::default();
        let fetched = self
            .primary
            .fetch(if from_secondary { &none } else { validators })
            .await;
        let problem = match usable(&fetched) {
            Ok(()) => {
                self.from_secondary.store(false, Ordering::Release);
                return fetched;
            }
            Err(problem) => problem,
        };
        tracing::warn!(
            primary = self.primary.id(),
            secondary = self.secondary.id(),
            %problem,
            "primary key source failed; trying the secondary"
        );
        let fetched = self
            .secondary
            .fetch(if from_secondary { validators } else { &none })
            .await;
        if fetched.is_ok() {
            self.from_secondary.store(true, Ordering::Release);
        }
        fetched
    }
}

/// The first 8 bytes of the SHA-256 of `bytes`, in hex: names content in an id.
fn short_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}
