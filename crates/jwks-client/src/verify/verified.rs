//! The verified-token cache (opt-in): a repeated token is served without a second signature
//! check, as long as it is within its lifetime and its key is still in the current set.
//!
//! Trade-off: a cached token is not checked cryptographically again. What still holds on every
//! hit: `exp`/`nbf` against the current clock, and the token's key (same `kid`, same key
//! material) in the issuer's current key set, so a key removed upstream invalidates its tokens
//! at the next refresh. Memory: about the size of the payload per entry, for at most `capacity`
//! entries, each for at most the token's lifetime and the configured TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::jose::alg::Algorithm;
use jwkstash_core::SharedClock;
use sha2::{Digest, Sha256};

use crate::jose::claims::{Times, unix_seconds};
use crate::jose::keyset::{KeyId, KeySet};

/// What a full verification learnt, for the cache.
pub(crate) struct Checked {
    pub(crate) payload: Vec<u8>,
    pub(crate) times: Times,
    pub(crate) key_id: Option<KeyId>,
    pub(crate) alg: Algorithm,
    pub(crate) key: u64,
}

impl From<Checked> for Verified {
    fn from(checked: Checked) -> Self {
        Self {
            payload: checked.payload.into_boxed_slice(),
            times: checked.times,
            key_id: checked.key_id,
            alg: checked.alg,
            key: checked.key,
        }
    }
}

/// What was learnt from verifying a token once.
pub(crate) struct Verified {
    /// The decoded payload, to deserialize the claims from again.
    pub(crate) payload: Box<[u8]>,
    pub(crate) times: Times,
    pub(crate) key_id: Option<KeyId>,
    pub(crate) alg: Algorithm,
    /// The thumbprint of the key that verified it.
    pub(crate) key: u64,
}

impl Verified {
    /// Whether the key that verified the token is still in `set`.
    pub(crate) fn key_still_in(&self, set: &KeySet) -> bool {
        set.find_by(self.key_id.as_ref(), self.alg)
            .is_ok_and(|key| key.thumbprint() == self.key)
    }
}

pub(crate) type TokenHash = [u8; 32];

/// Verified tokens by the SHA-256 of the whole token.
pub(crate) struct VerifiedTokens {
    entries: moka::sync::Cache<TokenHash, Arc<Verified>>,
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: u64, ttl: Duration, clock: SharedClock) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilExpiry { ttl, clock })
            .build();
        Self { entries }
    }

    pub(crate) fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<Verified>> {
        self.entries.get(hash)
    }

    pub(crate) fn insert(&self, hash: TokenHash, verified: Verified) {
        self.entries.insert(hash, Arc::new(verified));
    }

    pub(crate) fn remove(&self, hash: &TokenHash) {
        self.entries.invalidate(hash);
    }
}

/// Each entry lives at most the TTL and at most until the token's `exp` (memory reclamation:
/// every hit checks `exp` against the verifier's clock anyway).
struct UntilExpiry {
    ttl: Duration,
    clock: SharedClock,
}

impl moka::Expiry<TokenHash, Arc<Verified>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &TokenHash,
        verified: &Arc<Verified>,
        _: Instant,
    ) -> Option<Duration> {
        let until_exp = verified.times.exp.map(|exp| {
            let now = unix_seconds(self.clock.now());
            Duration::from_secs(exp.saturating_sub(now))
        });
        Some(until_exp.map_or(self.ttl, |left| left.min(self.ttl)))
    }
}
