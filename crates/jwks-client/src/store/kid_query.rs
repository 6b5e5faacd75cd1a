//! Why a token's `kid` sends the verifier back to the provider: the kid is not in the set
//! (a rotation the cache has not seen), or its key did not verify the signature (a provider
//! that reused the kid for a new key). Both share one budget: at most one refetch per
//! `unknown_kid_cooldown`, fleet-wide with a shared tier.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::jose::claims::unix_seconds;
use crate::jose::keyset::{KeyId, KeySet};

/// A refetch asked for by one token's `kid`.
#[derive(Debug, Clone)]
pub(crate) enum KidQuery {
    /// The kid is not in the set; `absent_slot` marks it absent from that set once a fetched
    /// set shows it still lacks the kid. `issued_by` is the latest time (seconds since the
    /// epoch, by this verifier's clock) at which the token may have been issued; `iat` its
    /// unverified `iat`, by the provider's clock.
    Unknown {
        id: KeyId,
        absent_slot: String,
        issued_by: u64,
        iat: Option<u64>,
    },
    /// The key with `thumbprint` under the kid did not verify a signature. Never remembered:
    /// a forgery must not keep a genuine reuse of the kid out for longer than one cooldown.
    FailedSignature { id: KeyId, thumbprint: u64 },
}

impl KidQuery {
    /// `kid` is not in `set`. The token says (unverified) it was issued at `iat`, by a
    /// provider whose clock may run up to `skew` behind ours; without `iat` it may have been
    /// issued up to `now`.
    pub(crate) fn unknown(
        id: &KeyId,
        set: &KeySet,
        iat: Option<u64>,
        skew: Duration,
        now: SystemTime,
    ) -> Self {
        let issued_by = iat.map_or(unix_seconds(now), |iat| iat.saturating_add(skew.as_secs()));
        Self::Unknown {
            id: id.clone(),
            absent_slot: absent_slot(set.fingerprint(), id),
            issued_by,
            iat,
        }
    }

    /// The token's unverified `iat`, for an unknown kid.
    pub(crate) fn iat(&self) -> Option<u64> {
        match self {
            Self::Unknown { iat, .. } => *iat,
            Self::FailedSignature { .. } => None,
        }
    }

    /// Whether the token may have been issued after `at`. A provider publishes a key before it
    /// signs with it, so a genuine token of a kid that was absent from a set fetched at `at`
    /// was issued after `at`; a token that cannot have been is not made valid by a refetch.
    /// The `iat` is unverified: a forger who sets it gets a 503 and spends no more refetches
    /// than the cooldown allows.
    pub(crate) fn issued_after(&self, at: SystemTime) -> bool {
        match self {
            Self::Unknown { issued_by, .. } => *issued_by > unix_seconds(at),
            Self::FailedSignature { .. } => false,
        }
    }

    /// The key with `thumbprint` under `kid` did not verify a token's signature.
    pub(crate) fn failed_signature(id: &KeyId, thumbprint: u64) -> Self {
        Self::FailedSignature {
            id: id.clone(),
            thumbprint,
        }
    }

    /// Whether the kid was unknown (else its key failed the signature).
    pub(crate) fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }

    /// A short name for logs and metrics.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_kid",
            Self::FailedSignature { .. } => "reused_kid",
        }
    }

    /// The slot that says the kid was found absent from the set it was asked of.
    pub(crate) fn absent_slot(&self) -> Option<&str> {
        match self {
            Self::Unknown { absent_slot, .. } => Some(absent_slot),
            Self::FailedSignature { .. } => None,
        }
    }

    /// Whether `set` can answer the token differently than the set the question was asked
    /// of: it has the unknown kid, or another key under the kid whose key failed.
    pub(crate) fn answered_by(&self, set: &KeySet) -> bool {
        match self {
            Self::Unknown { id, .. } => set.contains(id),
            Self::FailedSignature { id, thumbprint } => set
                .keys()
                .iter()
                .any(|key| id.names(key) && key.thumbprint() != *thumbprint),
        }
    }

    /// The slot that marks the unknown kid absent from `set`, when `set` lacks it.
    pub(crate) fn absent_from(&self, set: &KeySet) -> Option<String> {
        match self {
            Self::Unknown { id, .. } if !set.contains(id) => {
                Some(absent_slot(set.fingerprint(), id))
            }
            _ => None,
        }
    }
}

/// The slot that marks `kid` as looked for, and absent, in the set with `fingerprint`. The kid
/// is hashed: nothing from a token reaches a shared key raw.
fn absent_slot(fingerprint: u64, id: &KeyId) -> String {
    let kid_hash = Sha256::digest(id.hash_input());
    format!("absent:{fingerprint:016x}:{}", hex::encode(&kid_hash[..8]))
}
