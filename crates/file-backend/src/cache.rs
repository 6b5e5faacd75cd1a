//! [`FileCache`]: the [`Cache`] implementation over a directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jwkstash_core::envelope::{self, Refusals, Refused, Secret};
use jwkstash_core::{Cache, CacheError, CacheErrorKind, CacheValue, Entry, SharedClock};
use sha2::{Digest, Sha256};

use crate::files::{self, Found, Owner};

pub(crate) const BACKEND: &str = "file";

/// A cache tier over a directory, for entries that outlive the process (see the crate docs).
/// Cloning is cheap; clones share their settings and counters.
#[derive(Clone)]
pub struct FileCache {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    /// The secret entries are sealed with, then those still accepted; empty: no HMAC.
    pub(crate) secrets: Vec<Secret>,
    pub(crate) max_value_bytes: usize,
    pub(crate) clock_skew: Duration,
    pub(crate) clock: SharedClock,
    /// The user snapshot files must belong to (checked when there is no secret).
    pub(crate) owner: Owner,
    pub(crate) refusals: Refusals,
}

impl fmt::Debug for FileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCache")
            .field("dir", &self.inner.dir)
            .field("secrets", &self.inner.secrets.len())
            .field("max_value_bytes", &self.inner.max_value_bytes)
            .finish_non_exhaustive()
    }
}

/// The file of a cache key: a hash, so that no key can name a path outside the directory.
fn file_name(key: &str) -> String {
    format!(
        "{}.jwks",
        &hex::encode(Sha256::digest(key.as_bytes()))[..32]
    )
}

fn io_error(error: std::io::Error) -> CacheError {
    let kind = match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            CacheErrorKind::Unavailable
        }
        _ => CacheErrorKind::Other,
    };
    CacheError::new(BACKEND, kind).with_source(error)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, CacheError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome.map_err(io_error),
        Err(error) => Err(CacheError::new(BACKEND, CacheErrorKind::Other).with_source(error)),
    }
}

impl FileCache {
    /// A builder for a cache over `dir` (an existing, writable directory).
    pub fn builder(dir: impl Into<PathBuf>) -> crate::FileCacheBuilder {
        crate::FileCacheBuilder::new(dir)
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Entries read and refused since this cache was built, by kind (`bad_mac`, `malformed`,
    /// `wrong_key`, `bad_times`, `expired`, `not_private`, ...). Every kind is listed.
    pub fn refusals(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.inner.refusals.counts()
    }

    fn refuse<T>(&self, key: &str, reason: Refused) -> Option<T> {
        self.inner.refusals.refuse(BACKEND, key, reason);
        None
    }

    /// The bytes of `key`'s file, or why there are none.
    async fn read_file(&self, key: &str) -> Result<Found, CacheError> {
        let path = self.inner.dir.join(file_name(key));
        let max = self.inner.max_value_bytes;
        // With a secret, the tag says who wrote an entry; without one, the file's owner does.
        let owner = self.inner.secrets.is_empty().then_some(self.inner.owner);
        blocking(move || files::read(&path, max, owner)).await
    }
}

/// Opens a file's envelope; the entry's times are checked against `now`.
fn open<'a>(
    inner: &Inner,
    key: &str,
    bytes: &'a [u8],
    now: SystemTime,
) -> Result<envelope::Opened<'a>, Refused> {
    envelope::open(key, bytes, &inner.secrets, now, inner.clock_skew)
}

#[async_trait]
impl<V: CacheValue + Clone> Cache<V> for FileCache {
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        let bytes = match self.read_file(key).await? {
            Found::Missing => return Ok(None),
            Found::NotAFile => return Ok(self.refuse(key, Refused::WrongType)),
            Found::TooLarge => return Ok(self.refuse(key, Refused::TooLarge)),
            Found::NotPrivate => return Ok(self.refuse(key, Refused::NotPrivate)),
            Found::Bytes(bytes) => bytes,
        };
        let opened = match open(&self.inner, key, &bytes, self.inner.clock.now()) {
            Ok(opened) => opened,
            Err(reason) => return Ok(self.refuse(key, reason)),
        };
        match V::from_bytes(opened.value) {
            Ok(value) => Ok(Some(opened.into_entry(value))),
            Err(_) => Ok(self.refuse(key, Refused::BadValue)),
        }
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        let now = self.inner.clock.now();
        if entry.usable_until <= now {
            return Ok(());
        }
        let secret = self.inner.secrets.first().map(Secret::bytes);
        let sealed = envelope::seal(key, &entry, &entry.value.to_bytes(), secret);
        let sealed = sealed.filter(|sealed| sealed.len() <= self.inner.max_value_bytes);
        let Some(sealed) = sealed else {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Other)
                .with_source("entry over the size limit"));
        };
        let (inner, key, fetched_at) = (Arc::clone(&self.inner), key.to_owned(), entry.fetched_at);
        blocking(move || {
            let name = file_name(&key);
            let _turn = files::lock(&inner.dir)?;
            // Under the lock: an entry fetched later than this one stays.
            let owner = inner.secrets.is_empty().then_some(inner.owner);
            if let Found::Bytes(held) =
                files::read(&inner.dir.join(&name), inner.max_value_bytes, owner)?
                && open(&inner, &key, &held, now).is_ok_and(|held| held.fetched_at > fetched_at)
            {
                return Ok(());
            }
            files::write_atomic(&inner.dir, &name, &sealed)
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        let (dir, name) = (self.inner.dir.clone(), file_name(key));
        blocking(move || {
            let _turn = files::lock(&dir)?;
            files::remove(&dir, &name)
        })
        .await
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}
