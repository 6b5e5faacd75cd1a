//! The tiers a key store reads: parsed key sets behind any [`Cache`], a tier a fleet shares,
//! and the stack of them.

use std::sync::Arc;

use jwkstash_core::{Cache, SharedTier};

use crate::jose::keyset::KeySet;

/// The cache stack type a verifier reads: parsed key sets behind any [`Cache`].
pub type KeySetTier = Arc<dyn Cache<Arc<KeySet>>>;

/// A tier shared by a fleet of verifiers (Redis): a cache with a lease and invalidations.
pub type SharedKeySetTier = Arc<dyn SharedTier<Arc<KeySet>>>;

/// A verifier's cache stack: its near tier over the fleet's shared tier, if any, over its
/// snapshot tier, if any.
pub(crate) type KeyTiers = jwkstash_core::Tiered<KeySetTier, SharedKeySetTier, KeySetTier>;
