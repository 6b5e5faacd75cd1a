//! The key store of one source: reads the cache stack, refreshes ahead of expiry, serves the last
//! good set through outages, backs off, and refetches for unknown `kid`s at most once per cooldown.
//! With a shared tier, [`Fleet`] makes the instances fetch once for all of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use jwkstash_core::{
    Entry, Fetched, KeySource, SharedClock, SingleFlight, Validators, unix_millis,
};
use sha2::{Digest, Sha256};

use crate::error::{KeySetError, KeysUnavailable, RefreshError};
use crate::fleet::Fleet;
use crate::health::Health;
use crate::keyset::KeySet;
use crate::policy::FreshnessPolicy;
use crate::stats::Counters;
use crate::verifier::KeySetCache;

/// A cached key set with its times.
pub(crate) type KeyEntry = Entry<Arc<KeySet>>;
pub(crate) type LoadResult = Result<KeyEntry, Arc<RefreshError>>;

/// Why a load runs.
#[derive(Debug, Clone)]
pub(crate) enum Reason {
    /// The set is missing, stale or due for refresh-ahead.
    Refresh,
    /// A token named a `kid` the set lacks; `absent_slot` names that (set, kid) pair.
    UnknownKid { kid: Box<str>, absent_slot: String },
}

/// The set a store verifies with, and when it is due for refresh.
struct Pinned {
    entry: KeyEntry,
    refresh_at: SystemTime,
}

pub(crate) struct KeyStore {
    /// The current set, read without touching the cache stack while it is fresh and not yet
    /// due for refresh: a hit costs one atomic load, no lock and no allocation.
    pinned: ArcSwapOption<Pinned>,
    source: Arc<dyn KeySource>,
    /// The cache stack: the near tier, or near over far with a fleet.
    cache: KeySetCache,
    pub(crate) cache_key: String,
    pub(crate) clock: SharedClock,
    pub(crate) policy: FreshnessPolicy,
    fleet: Option<Fleet>,
    /// One load at a time for this source, whatever started it.
    flights: SingleFlight<(), LoadResult>,
    /// Set while a background refresh is pending, so hits in the refresh window do not all
    /// contend for the flight lock.
    refresh_claimed: AtomicBool,
    health: Health,
    /// When the last unknown-kid refetch started (ms since the epoch; 0: never).
    kid_refetch_ms: AtomicU64,
    /// Kids found absent, with the fingerprint of the set they were absent from; made on the
    /// first unknown kid (most verifiers never see one).
    absent: std::sync::OnceLock<moka::sync::Cache<Box<str>, (u64, SystemTime)>>,
    /// The fleet's invalidation listener, stopped with the store.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source.id())
            .field("cache", &self.cache.name())
            .field("fleet", &self.fleet.is_some())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The parts a store is built from.
pub(crate) struct StoreParts {
    pub(crate) source: Arc<dyn KeySource>,
    pub(crate) cache: KeySetCache,
    pub(crate) cache_key: String,
    pub(crate) clock: SharedClock,
    pub(crate) policy: FreshnessPolicy,
    pub(crate) fleet: Option<Fleet>,
    pub(crate) counters: Arc<Counters>,
}

impl KeyStore {
    pub(crate) fn new(parts: StoreParts) -> Arc<Self> {
        let store = Arc::new(Self {
            pinned: ArcSwapOption::empty(),
            source: parts.source,
            cache: parts.cache,
            cache_key: parts.cache_key,
            clock: parts.clock,
            policy: parts.policy,
            fleet: parts.fleet,
            flights: SingleFlight::new(),
            refresh_claimed: AtomicBool::new(false),
            health: Health::default(),
            kid_refetch_ms: AtomicU64::new(0),
            absent: std::sync::OnceLock::new(),
            listener: Mutex::new(None),
            counters: parts.counters,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            store.listen();
        }
        store
    }

    /// The key set to verify with now.
    ///
    /// * fresh: returned at once; inside the refresh-ahead window a background refresh starts.
    /// * stale (past `fresh_until`, within `max_stale`): refreshed first, unless the source is
    ///   backing off after failures; if the refresh fails the stale set is served.
    /// * absent or past `max_stale`: loaded (coalesced); failure is [`KeysUnavailable`].
    pub(crate) async fn current(self: &Arc<Self>) -> Result<KeyEntry, KeysUnavailable> {
        let now = self.clock.now();
        if let Some(pinned) = self.pinned.load().as_deref()
            && now < pinned.refresh_at
        {
            return Ok(pinned.entry.clone());
        }
        let cached = self.cached().await;
        match cached {
            Some(entry) if entry.is_fresh(now) => {
                self.pin(&entry);
                if now >= self.refresh_at(&entry) {
                    self.refresh_in_background(&entry, now);
                }
                Ok(entry)
            }
            Some(stale) if stale.is_usable(now) => {
                self.listen();
                Ok(self.refresh_stale(stale, now).await)
            }
            _ => {
                self.listen();
                self.load_cold(now).await
            }
        }
    }

    /// Called when `kid` is not in `seen`. Refetches at most once per cooldown (joining a load
    /// already running), and returns the set to look the kid up in again, or `None` when no
    /// refetch was allowed. Valid tokens never wait here: only unknown kids reach it.
    pub(crate) async fn refetch_for_unknown_kid(
        self: &Arc<Self>,
        kid: &str,
        seen: &KeyEntry,
    ) -> Result<Option<KeyEntry>, KeysUnavailable> {
        let now = self.clock.now();
        let fingerprint = seen.value.fingerprint();
        if self.known_absent(kid, fingerprint, now) || self.health.retry_after(now).is_some() {
            self.counters.kid_refetch_suppressed();
            return Ok(None);
        }
        let store = Arc::clone(self);
        let current = seen.clone();
        let reason = Reason::UnknownKid {
            kid: kid.into(),
            absent_slot: absent_slot(fingerprint, kid),
        };
        let outcome = self
            .flights
            .run_if(
                (),
                || self.claim_kid_refetch(now),
                || store.load(Some(current), reason),
            )
            .await;
        let Some(outcome) = outcome else {
            self.counters.kid_refetch_suppressed();
            tracing::debug!(
                source = self.source.id(),
                "unknown kid: refetch suppressed by the cooldown"
            );
            // A refetch may have landed since `seen` was read: retry with the newer set.
            return Ok(self
                .cached()
                .await
                .filter(|latest| latest.value.fingerprint() != fingerprint));
        };
        self.counters.kid_refetch();
        let entry = outcome
            .map_err(|error| Arc::new(RefreshError::from(error)))
            .and_then(|loaded| loaded)
            .map_err(|cause| KeysUnavailable::new(cause, self.health.retry_after(now)))?;
        if !entry.value.contains_kid(kid) {
            self.absent()
                .insert(kid.into(), (entry.value.fingerprint(), self.clock.now()));
        }
        Ok(Some(entry))
    }

    /// Reads the cache stack, counting which tier answered.
    async fn cached(&self) -> Option<KeyEntry> {
        let key = self.cache_key.as_str();
        let found = match &self.fleet {
            None => read_tier(&*self.cache, key).await,
            Some(fleet) => match read_tier(&*fleet.near, key).await {
                Some(entry) => Some(entry),
                None => {
                    let entry = read_tier(&*fleet.far, key).await;
                    if let Some(entry) = &entry {
                        self.counters.far_hit();
                        if let Err(error) = fleet.near.put(key, entry.clone()).await {
                            tracing::warn!(%error, "near tier write failed");
                        }
                        return Some(entry.clone());
                    }
                    entry
                }
            },
        };
        match &found {
            Some(_) => self.counters.near_hit(),
            None => self.counters.cache_miss(),
        }
        found
    }

    /// Runs `f` on the pinned set if it is fresh and not yet due for refresh at `now`: the hit
    /// path, without the cache stack, a lock or a reference count.
    pub(crate) fn with_pinned<R>(
        &self,
        now: SystemTime,
        f: impl FnOnce(&KeySet) -> R,
    ) -> Option<R> {
        let pinned = self.pinned.load();
        let pinned = pinned.as_deref().filter(|pinned| now < pinned.refresh_at)?;
        Some(f(&pinned.entry.value))
    }

    /// Makes `entry` the set verified with, unless a newer one is pinned already.
    pub(crate) fn pin(&self, entry: &KeyEntry) {
        self.counters.key_set(entry.fetched_at, self.clock.now());
        let refresh_at = self.refresh_at(entry);
        self.pinned.rcu(|pinned| match pinned {
            Some(pinned) if pinned.entry.fetched_at > entry.fetched_at => Some(Arc::clone(pinned)),
            _ => Some(Arc::new(Pinned {
                entry: entry.clone(),
                refresh_at,
            })),
        });
    }

    fn refresh_at(&self, entry: &KeyEntry) -> SystemTime {
        let ttl = entry
            .fresh_until
            .duration_since(entry.fetched_at)
            .unwrap_or_default();
        entry.fresh_until - self.policy.refresh_ahead_for(ttl)
    }

    fn refresh_in_background(self: &Arc<Self>, entry: &KeyEntry, now: SystemTime) {
        if self.health.retry_after(now).is_some()
            || self.refresh_claimed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tracing::debug!(
            source = self.source.id(),
            "refreshing the key set ahead of expiry"
        );
        let store = Arc::clone(self);
        let current = entry.clone();
        let started = self.flights.start((), move || async move {
            let _release = ReleaseClaim(Arc::clone(&store));
            store.load(Some(current), Reason::Refresh).await
        });
        if !started {
            // Another load is running; it will bring a new set.
            self.refresh_claimed.store(false, Ordering::Release);
        }
    }

    async fn refresh_stale(self: &Arc<Self>, stale: KeyEntry, now: SystemTime) -> KeyEntry {
        if self.health.retry_after(now).is_none() {
            match self.load_shared(Some(stale.clone())).await {
                Ok(fresh) => return fresh,
                Err(error) => tracing::warn!(%error, "refresh failed; serving the stale key set"),
            }
        }
        self.counters.stale_served();
        tracing::debug!(
            source = self.source.id(),
            "serving the last good key set while the source fails"
        );
        stale
    }

    async fn load_cold(self: &Arc<Self>, now: SystemTime) -> Result<KeyEntry, KeysUnavailable> {
        if let Some(retry_after) = self.health.retry_after(now) {
            return Err(KeysUnavailable::new(
                self.health.last_error(),
                Some(retry_after),
            ));
        }
        self.load_shared(None)
            .await
            .map_err(|cause| KeysUnavailable::new(cause, self.health.retry_after(now)))
    }

    /// Runs one load for this source, or joins the one running.
    async fn load_shared(self: &Arc<Self>, current: Option<KeyEntry>) -> LoadResult {
        let store = Arc::clone(self);
        self.counters.waited_for_load();
        self.flights
            .run((), || store.load(current, Reason::Refresh))
            .await
            .map_err(|error| Arc::new(RefreshError::from(error)))?
    }

    /// Brings a newer set: through the fleet when there is one, else from the source.
    async fn load(self: Arc<Self>, current: Option<KeyEntry>, reason: Reason) -> LoadResult {
        let outcome = match &self.fleet {
            Some(fleet) => fleet.load(&self, current, reason).await,
            None => self.fetch(current).await,
        };
        match &outcome {
            Ok(entry) => {
                self.health.succeeded();
                self.pin(entry);
            }
            Err(error) => {
                let delay = self
                    .health
                    .failed(self.clock.now(), &self.policy, Arc::clone(error));
                tracing::warn!(%error, source = self.source.id(), retry_in = ?delay, "key set fetch failed");
            }
        }
        outcome
    }

    /// Fetches, parses and stores a new set (or extends `current` on 304).
    pub(crate) async fn fetch(&self, current: Option<KeyEntry>) -> LoadResult {
        let validators = Validators {
            etag: current
                .as_ref()
                .and_then(|entry| entry.etag.as_deref())
                .map(str::to_owned),
        };
        self.counters.fetch();
        let started = std::time::Instant::now();
        let fetched = self.source.fetch(&validators).await;
        self.counters.fetch_took(started.elapsed());
        let now = self.clock.now();
        let outcome = match fetched {
            Ok(Fetched::Modified {
                body,
                etag,
                max_age,
            }) => KeySet::parse(body)
                .map(|set| self.entry(Arc::new(set), etag, max_age, now))
                .map_err(RefreshError::from),
            Ok(Fetched::NotModified { max_age }) => match current {
                Some(current) => Ok(self.entry(current.value, current.etag, max_age, now)),
                None => Err(KeySetError::UnexpectedNotModified.into()),
            },
            Err(error) => Err(RefreshError::from(error)),
        };
        let entry = outcome.map_err(|error| {
            self.counters.fetch_failed();
            Arc::new(error)
        })?;
        if let Err(error) = self.cache.put(&self.cache_key, entry.clone()).await {
            tracing::warn!(%error, "could not store the key set");
        }
        tracing::info!(
            source = self.source.id(),
            fingerprint = entry.value.fingerprint(),
            keys = entry.value.keys().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "key set loaded"
        );
        Ok(entry)
    }

    fn entry(
        &self,
        set: Arc<KeySet>,
        etag: Option<impl Into<Arc<str>>>,
        max_age: Option<Duration>,
        now: SystemTime,
    ) -> KeyEntry {
        let fresh_until = now + self.policy.ttl_for(max_age);
        Entry::new(set, now, fresh_until, fresh_until + self.policy.max_stale).with_etag(etag)
    }

    /// Claims the unknown-kid refetch if the cooldown has passed. Runs under the flight lock.
    fn claim_kid_refetch(&self, now: SystemTime) -> bool {
        let now = unix_millis(now);
        let last = self.kid_refetch_ms.load(Ordering::Acquire);
        let cooldown =
            u64::try_from(self.policy.unknown_kid_cooldown.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now < last.saturating_add(cooldown) {
            return false;
        }
        self.kid_refetch_ms.store(now.max(1), Ordering::Release);
        true
    }

    fn absent(&self) -> &moka::sync::Cache<Box<str>, (u64, SystemTime)> {
        self.absent.get_or_init(|| {
            moka::sync::Cache::builder()
                .max_capacity(self.policy.negative_cache_capacity)
                .build()
        })
    }

    fn known_absent(&self, kid: &str, fingerprint: u64, now: SystemTime) -> bool {
        self.absent
            .get()
            .and_then(|absent| absent.get(kid))
            .is_some_and(|(absent_from, since)| {
                absent_from == fingerprint && now < since + self.policy.negative_ttl
            })
    }

    /// Starts the fleet's invalidation listener once (no-op without a fleet).
    pub(crate) fn listen(self: &Arc<Self>) {
        let Some(fleet) = &self.fleet else { return };
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if listener.is_none() {
            *listener = Some(fleet.spawn_listener(Arc::downgrade(self)));
        }
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            listener.abort();
        }
    }
}

/// One tier's answer; a failing tier is a miss (logged).
async fn read_tier(tier: &dyn jwkstash_core::Cache<Arc<KeySet>>, key: &str) -> Option<KeyEntry> {
    match tier.get(key).await {
        Ok(entry) => entry,
        Err(error) => {
            tracing::warn!(%error, tier = tier.name(), "key cache read failed; treated as a miss");
            None
        }
    }
}

/// The slot that marks `kid` as looked for, and absent, in the set with `fingerprint`. The kid
/// is hashed: nothing from a token reaches a shared key raw.
pub(crate) fn absent_slot(fingerprint: u64, kid: &str) -> String {
    let kid_hash = Sha256::digest(kid.as_bytes());
    format!("absent:{fingerprint:016x}:{}", hex::encode(&kid_hash[..8]))
}

/// Clears the background-refresh claim when the refresh ends, however it ends.
struct ReleaseClaim(Arc<KeyStore>);

impl Drop for ReleaseClaim {
    fn drop(&mut self) {
        self.0.refresh_claimed.store(false, Ordering::Release);
    }
}
