//! [`FileCacheBuilder`]: which directory, how entries are authenticated, how large they may be.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jwkstash_core::envelope::{Secrets, SecretsError};
use jwkstash_core::{SharedClock, SystemClock};

use crate::cache::{FileCache, Inner};
use crate::files;

/// Default cap on a stored entry (the envelope around a 256 KiB JWKS, with room to spare).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 512 * 1024;
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// A configuration that [`FileCacheBuilder::build`] refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The directory does not exist (it is not created: a mistyped path should not become a
    /// new directory that nothing else reads).
    #[error("snapshot directory {0} does not exist")]
    MissingDirectory(PathBuf),
    /// The path names something other than a directory.
    #[error("snapshot path {0} is not a directory")]
    NotADirectory(PathBuf),
    /// The directory is read-only (no write permission) or a file could not be created in it.
    #[error("snapshot directory {path} is not writable")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// What the probe write met.
        #[source]
        source: std::io::Error,
    },
    /// An HMAC secret is shorter than 16 bytes.
    #[error("the HMAC secret must be at least 16 bytes")]
    WeakSecret,
    /// A previous secret was given without a current one.
    #[error("previous_hmac_secret needs an hmac_secret to write with")]
    MissingSecret,
    /// A size is zero.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
}

impl From<SecretsError> for BuildError {
    fn from(error: SecretsError) -> Self {
        match error {
            SecretsError::NoCurrent => Self::MissingSecret,
            _ => Self::WeakSecret,
        }
    }
}

/// Builds a [`FileCache`].
#[must_use]
pub struct FileCacheBuilder {
    dir: PathBuf,
    secrets: Secrets,
    max_value_bytes: usize,
    clock_skew: Duration,
    clock: SharedClock,
}

impl fmt::Debug for FileCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCacheBuilder")
            .field("dir", &self.dir)
            .field("secrets", &self.secrets)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl FileCacheBuilder {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            secrets: Secrets::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            clock_skew: DEFAULT_CLOCK_SKEW,
            clock: Arc::new(SystemClock),
        }
    }

    /// Authenticates entries with HMAC-SHA256 under `secret` (at least 16 bytes): entries
    /// without a valid tag are refused. Without a secret, entries are trusted as far as the
    /// file system protects them (files of this user, writable by no one else).
    pub fn hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secrets.set_current(secret);
        self
    }

    /// A secret being rotated out: entries tagged with it are still accepted; new ones are
    /// tagged with [`hmac_secret`](Self::hmac_secret). Call again for more.
    pub fn previous_hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secrets.add_previous(secret);
        self
    }

    /// The largest entry read or written, in bytes (default [`DEFAULT_MAX_VALUE_BYTES`]).
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// How far in the future an entry's `fetched_at` may lie (default 5 s): an entry written
    /// under a clock further ahead is refused.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The clock entries are judged by (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and the directory (it must exist and take a file), and builds the
    /// cache. Blocks briefly on the file system.
    pub fn build(self) -> Result<FileCache, BuildError> {
        let secrets = self.secrets.checked()?;
        if self.max_value_bytes == 0 {
            return Err(BuildError::InvalidSetting(
                "max_value_bytes must be positive",
            ));
        }
        let owner = check_directory(&self.dir)?;
        Ok(FileCache::from_inner(Inner {
            dir: self.dir,
            secrets,
            max_value_bytes: self.max_value_bytes,
            clock_skew: self.clock_skew,
            clock: self.clock,
            owner,
            refusals: Default::default(),
        }))
    }
}

/// Checks that `dir` is a writable directory by creating and removing a file in it; returns
/// the owner of that file (this process's user), whom snapshot files must belong to.
fn check_directory(dir: &Path) -> Result<files::Owner, BuildError> {
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(BuildError::MissingDirectory(dir.to_owned()));
        }
        Err(source) => {
            return Err(BuildError::NotWritable {
                path: dir.to_owned(),
                source,
            });
        }
    };
    if !metadata.is_dir() {
        return Err(BuildError::NotADirectory(dir.to_owned()));
    }
    // Permission bits first: a superuser passes every write check, but a directory that
    // nobody may write is meant to be read-only.
    if metadata.permissions().readonly() {
        return Err(BuildError::NotWritable {
            path: dir.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the directory has no write permission",
            ),
        });
    }
    files::probe(dir).map_err(|source| BuildError::NotWritable {
        path: dir.to_owned(),
        source,
    })
}
