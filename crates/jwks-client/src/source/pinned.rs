//! A source with extra keys pinned by the application ([`WithPinnedKeys`]), merged into every
//! set it fetches under their own kids.

use async_trait::async_trait;
use bytes::Bytes;
use jwkstash_core::{FetchError, Fetched, KeySource, Validators};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::jose::error::KeySetError;
use crate::jose::keyset::KeySet;
use crate::source::static_keys::short_hex;

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
