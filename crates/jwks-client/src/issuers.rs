//! [`Issuers`]: many issuers (tenants) in one process. A token's `iss` selects the verifier of
//! that issuer; an `iss` that is not configured is refused without any network request.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{InvalidToken, VerifyError};
use crate::token::decode_segment;
use crate::verifier::{DEFAULT_MAX_TOKEN_BYTES, KeySetCache, Verifier, VerifierBuilder};

/// A registry of verifiers by issuer. Cheap to clone; clones share the registry.
///
/// Each verifier keeps its own key source, audience and policy, and its keys verify only tokens
/// of its issuer(s): routing by the (not yet verified) `iss` only chooses which verifier checks
/// the token, and that verifier checks `iss` again, with the signature. Issuers can be added and
/// removed at run time; lookups take no lock.
#[derive(Clone)]
pub struct Issuers {
    verifiers: Arc<ArcSwap<HashMap<Box<str>, Verifier>>>,
    near: Option<KeySetCache>,
    max_token_bytes: usize,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verifiers = self.verifiers.load();
        let mut issuers: Vec<&str> = verifiers.keys().map(AsRef::as_ref).collect();
        issuers.sort_unstable();
        f.debug_struct("Issuers")
            .field("issuers", &issuers)
            .finish()
    }
}

impl Default for Issuers {
    fn default() -> Self {
        Self::new()
    }
}

/// Just the issuer of a payload, borrowed when it can be.
#[derive(Deserialize)]
struct IssuerOnly<'a> {
    #[serde(borrow)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

impl Issuers {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            verifiers: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            near: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }

    /// An empty registry whose [`verifier_builder`](Self::verifier_builder) gives every verifier
    /// the same near tier, so that memory stays bounded by that tier with many issuers.
    pub fn with_cache(near: KeySetCache) -> Self {
        Self {
            near: Some(near),
            ..Self::new()
        }
    }

    /// The longest token the registry routes, in bytes (default 16 KiB, like
    /// [`VerifierBuilder::max_token_bytes`]); longer ones are refused before any decoding. Each
    /// verifier still applies its own limit.
    #[must_use]
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes.max(1);
        self
    }

    /// A verifier builder with the registry's shared near tier (if any).
    pub fn verifier_builder(&self) -> VerifierBuilder {
        match &self.near {
            Some(near) => Verifier::builder().cache(Arc::clone(near)),
            None => Verifier::builder(),
        }
    }

    /// Adds (or replaces) the verifier of each of its issuers.
    pub fn insert(&self, verifier: Verifier) {
        self.verifiers.rcu(|current| {
            let mut next = HashMap::clone(current);
            for issuer in verifier.issuers() {
                next.insert(issuer.as_str().into(), verifier.clone());
            }
            next
        });
    }

    /// The health of every issuer's keys (see [`Verifier::health`]), sorted by issuer: read
    /// from memory, no I/O.
    pub fn health(&self) -> Vec<(String, crate::KeyHealth)> {
        let verifiers = self.verifiers.load();
        let mut health: Vec<(String, crate::KeyHealth)> = verifiers
            .iter()
            .map(|(issuer, verifier)| (issuer.to_string(), verifier.health()))
            .collect();
        health.sort_by(|a, b| a.0.cmp(&b.0));
        health
    }

    /// Removes the verifier of `issuer` (under all its issuers), returning it.
    pub fn remove(&self, issuer: &str) -> Option<Verifier> {
        let removed = self.get(issuer)?;
        self.verifiers.rcu(|current| {
            let mut next = HashMap::clone(current);
            for issuer in removed.issuers() {
                next.remove(issuer.as_str());
            }
            next
        });
        Some(removed)
    }

    /// The verifier of `issuer`.
    pub fn get(&self, issuer: &str) -> Option<Verifier> {
        self.verifiers.load().get(issuer).cloned()
    }

    /// How many issuers are configured.
    pub fn len(&self) -> usize {
        self.verifiers.load().len()
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Verifies `token` with the verifier of its `iss`.
    ///
    /// A token without `iss`, or whose `iss` is not configured, is refused
    /// ([`InvalidToken::UnknownIssuer`]) before any key lookup or network request.
    pub async fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, VerifyError> {
        let verifier = {
            let issuer = self.peek_issuer(token)?;
            self.verifiers
                .load()
                .get(issuer.as_str())
                .cloned()
                .ok_or(InvalidToken::UnknownIssuer)?
        };
        verifier.verify(token).await
    }

    fn peek_issuer(&self, token: &str) -> Result<String, InvalidToken> {
        if token.len() > self.max_token_bytes {
            return Err(InvalidToken::TooLarge {
                limit: self.max_token_bytes,
            });
        }
        let payload = token
            .split('.')
            .nth(1)
            .ok_or(InvalidToken::Malformed("not three segments"))?;
        let payload = decode_segment(payload)?;
        let claims: IssuerOnly<'_> = serde_json::from_slice(&payload)
            .map_err(|_| InvalidToken::Malformed("payload is not a valid JSON object"))?;
        claims
            .iss
            .map(std::borrow::Cow::into_owned)
            .ok_or(InvalidToken::UnknownIssuer)
    }
}
