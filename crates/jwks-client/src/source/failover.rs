//! A second source for when the first fails ([`Failover`]).

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use jwkstash_core::{FetchError, Fetched, KeySource, Validators};

use crate::jose::keyset::KeySet;

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
