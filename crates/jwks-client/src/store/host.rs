//! The key store as its loader and the fleet's listener see it: the narrow interface of
//! [`load`](crate::store::load), and nothing else of its insides.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jwkstash_core::{Cache, unix_millis};

use crate::store::events::Events;
use crate::store::key_store::KeyStore;
use crate::store::load::{Follower, Host, KeyEntry, LoadResult, Reason, supersedes};
use crate::store::policy::FreshnessPolicy;

#[async_trait::async_trait]
impl Host for KeyStore {
    fn cache_key(&self) -> &str {
        &self.cache_key
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn policy(&self) -> &FreshnessPolicy {
        &self.policy
    }

    fn source_id(&self) -> &str {
        KeyStore::source_id(self)
    }

    fn instance(&self) -> u32 {
        self.instance
    }

    fn events(&self) -> &Events {
        &self.events
    }

    async fn fetch(&self, current: Option<KeyEntry>, reason: &Reason) -> LoadResult {
        KeyStore::fetch(self, current, reason).await
    }

    async fn newer_in_shared(&self, current: Option<&KeyEntry>) -> Option<KeyEntry> {
        let now = self.clock.now();
        let newer = |entry: KeyEntry| {
            let entry = self.clamp_outer(entry)?;
            let newer = current.is_none_or(|current| supersedes(&entry, current));
            (newer && entry.is_fresh(now)).then_some(entry)
        };
        self.tiers.read_shared(&self.cache_key, newer).await
    }

    fn attempt_period(&self) -> Duration {
        KeyStore::attempt_period(self)
    }

    fn remember_absent(&self, slot: &str, at: SystemTime) {
        KeyStore::remember_absent(self, slot, at);
    }

    fn kid_refetch_claimed_at(&self, at: SystemTime) {
        KeyStore::kid_refetch_claimed_at(self, at);
    }
}

#[async_trait::async_trait]
impl Follower for KeyStore {
    async fn catch_up(&self, version: u64) {
        self.counters.invalidation_heard();
        let held = self.tiers.near().get(&self.cache_key).await.ok().flatten();
        if version != u64::MAX
            && held
                .as_ref()
                .is_some_and(|held| unix_millis(held.fetched_at) > version)
        {
            return;
        }
        let newer = |entry: KeyEntry| {
            let entry = self.clamp_outer(entry)?;
            held.as_ref()
                .is_none_or(|held| supersedes(&entry, held))
                .then_some(entry)
        };
        if let Some(entry) = self.tiers.read_shared(&self.cache_key, newer).await {
            self.pin(&entry);
        }
    }

    async fn refresh_requested(self: Arc<Self>) {
        tracing::info!(
            source = self.source_id(),
            "refresh requested through the shared tier"
        );
        let _ = self.refresh().await;
    }
}
