//! Why a token's `kid` sends the verifier back to the provider: the kid is not in the set
//! (a rotation the cache has not seen), or its key did not verify the signature (a provider
//! that reused the kid for a new key). Both share one budget: at most one refetch per
//! `unknown_kid_cooldown`, fleet-wide with a shared tier.

use sha2::{Digest, Sha256};

use crate::keyset::{KeyId, KeySet};

/// A refetch asked for by one token's `kid`.
#[derive(Debug, Clone)]
pub(crate) enum KidQuery {
    /// The kid is not in the set; `absent_slot` marks it absent from that set once a fetched
    /// set shows it still lacks the kid.
    Unknown { id: KeyId, absent_slot: String },
    /// The key with `thumbprint` under the kid did not verify a signature. Never remembered:
    /// a forgery must not keep a genuine reuse of the kid out for longer than one cooldown.
    FailedSignature { id: KeyId, thumbprint: u64 },
}

impl KidQuery {
    /// `kid` is not in `set`.
    pub(crate) fn unknown(id: &KeyId, set: &KeySet) -> Self {
        Self::Unknown {
            id: id.clone(),
            absent_slot: absent_slot(set.fingerprint(), id),
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
