//! A JWKS held by the application ([`StaticKeySource`]): inline, or in a file read again at
//! every refresh. A [`KeySource`] like any other: it goes through the cache stack and the fleet.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use jwkstash_core::{FetchError, Fetched, KeySource, Validators};
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

/// The first 8 bytes of the SHA-256 of `bytes`, in hex: names content in an id.
pub(crate) fn short_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}
