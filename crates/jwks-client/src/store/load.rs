//! The narrow interface between a key store and what brings it sets: the store is a [`Host`]
//! to its [`Loader`] (alone, a fetch; in a fleet, the fleet's lease and shared tier), and a
//! [`Follower`] of the shared tier's listener. The fleet sees nothing else of the store.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use jwkstash_core::Entry;

use crate::jose::keyset::KeySet;
use crate::store::error::RefreshError;
use crate::store::events::Events;
use crate::store::kid_query::KidQuery;
use crate::store::policy::FreshnessPolicy;

/// A cached key set with its times.
pub(crate) type KeyEntry = Entry<Arc<KeySet>>;
/// What a load brings: a set, or the (shared) reason it failed.
pub(crate) type LoadResult = Result<KeyEntry, Arc<RefreshError>>;

/// Why a load runs.
#[derive(Debug, Clone)]
pub(crate) enum Reason {
    /// No usable set (cold start, or past `max_stale`): callers wait.
    Cold,
    /// The set is inside its refresh-ahead window.
    RefreshAhead,
    /// The set is past its freshness and served stale meanwhile.
    Stale,
    /// A token named a `kid` the set lacks, or one whose key failed the signature.
    Kid(KidQuery),
    /// An operator asked for it ([`Verifier::refresh`](crate::Verifier::refresh)).
    Forced,
}

impl Reason {
    /// A short name for logs and metrics.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Cold => "cold",
            Self::RefreshAhead => "refresh_ahead",
            Self::Stale => "stale",
            Self::Kid(query) => query.code(),
            Self::Forced => "forced",
        }
    }
}

/// Whether `entry` replaces `held`: fetched later, or at the same millisecond with other content.
pub(crate) fn supersedes(entry: &KeyEntry, held: &KeyEntry) -> bool {
    entry.fetched_at > held.fetched_at
        || (entry.fetched_at == held.fetched_at
            && entry.value.fingerprint() != held.value.fingerprint())
}

/// How a store brings a set newer than the one it holds: one small trait, so that the store
/// knows nothing of fleets (the fleet implements it over a shared tier).
#[async_trait::async_trait]
pub(crate) trait Loader: Send + Sync {
    /// A short name for `Debug`.
    fn name(&self) -> &'static str;

    /// Brings a set newer than `current` for `reason` (a fetch, or another instance's).
    async fn load(&self, host: &dyn Host, current: Option<KeyEntry>, reason: Reason) -> LoadResult;

    /// Starts what keeps `follower` (the store of entry `key`) up to date between loads, if
    /// anything; it stops when the returned value is dropped (with the store). Called in a
    /// tokio runtime.
    fn listen(
        &self,
        key: &str,
        now: SystemTime,
        follower: Weak<dyn Follower>,
    ) -> Option<Box<dyn Listening>>;
}

/// What keeps a store up to date between loads (a fleet's place on the shared tier's
/// listener), for as long as it is held.
pub(crate) trait Listening: Send + Sync {}

/// What a [`Loader`] may use of the store it loads for.
#[async_trait::async_trait]
pub(crate) trait Host: Send + Sync {
    /// The name of the store's entry in every tier.
    fn cache_key(&self) -> &str;

    /// Now, by the store's clock.
    fn now(&self) -> SystemTime;

    /// The store's freshness policy.
    fn policy(&self) -> &FreshnessPolicy;

    /// The key source's id, for logs.
    fn source_id(&self) -> &str;

    /// A random name of this instance, for logs.
    fn instance(&self) -> u32;

    /// Where the store reports what happens to its keys.
    fn events(&self) -> &Events;

    /// Fetches from the source, parses, and stores the set in every tier.
    async fn fetch(&self, current: Option<KeyEntry>, reason: &Reason) -> LoadResult;

    /// A fresh entry of the shared tier newer than `current`, held to the store's policy and
    /// copied to its near tier.
    async fn newer_in_shared(&self, current: Option<&KeyEntry>) -> Option<KeyEntry>;

    /// How long to wait after an upstream attempt before the next: zero while the source is
    /// healthy, else the backoff for the failures seen.
    fn attempt_period(&self) -> Duration;

    /// Remembers that the kid of `slot` was found absent from a set fetched at `at`.
    fn remember_absent(&self, slot: &str, at: SystemTime);

    /// Takes an unknown-kid refetch claimed at `at` elsewhere as the store's own.
    fn kid_refetch_claimed_at(&self, at: SystemTime);
}

/// What the shared tier's listener tells a store.
#[async_trait::async_trait]
pub(crate) trait Follower: Send + Sync {
    /// Copies the shared entry into the store if it is newer than what the store holds and at
    /// least `version` (ms; `u64::MAX`: whatever it is).
    async fn catch_up(&self, version: u64);

    /// Refreshes now, as [`Verifier::refresh`](crate::Verifier::refresh) does (a refresh
    /// request from the tier).
    async fn refresh_requested(self: Arc<Self>);
}
