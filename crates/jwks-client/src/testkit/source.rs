//! A key source that serves a fixed JWKS from memory and counts its fetches.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use jwkstash_core::{FetchError, Fetched, KeySource, Validators};

/// Serves one fixed JWKS document (for benchmarks and fuzzing: no network, no mock).
#[derive(Debug)]
pub struct StaticSource {
    body: Bytes,
    fetches: AtomicUsize,
}

impl StaticSource {
    /// A source serving `jwks`.
    pub fn new(jwks: impl Into<Bytes>) -> Self {
        Self {
            body: jwks.into(),
            fetches: AtomicUsize::new(0),
        }
    }

    /// How many times it was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl KeySource for StaticSource {
    fn id(&self) -> &str {
        "static://jwks"
    }

    async fn fetch(&self, _: &Validators) -> Result<Fetched, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(Fetched::Modified {
            body: self.body.clone(),
            etag: None,
            max_age: None,
        })
    }
}
