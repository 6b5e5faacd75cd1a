//! When the provider is called: the key store of one source (its freshness policy, backoff,
//! unknown-kid cooldown and negative cache, events), and the fleet that makes instances sharing
//! a tier fetch once for all of them.

pub(crate) mod backoff;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod fleet;
pub(crate) mod freshness;
pub(crate) mod host;
pub(crate) mod key_store;
pub(crate) mod kid_query;
pub(crate) mod listener;
pub(crate) mod load;
pub(crate) mod policy;
pub(crate) mod tiers;

pub(crate) use key_store::*;
