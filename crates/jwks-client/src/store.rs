//! The key store of one source: reads the cache stack, refreshes ahead of expiry, serves the last
//! good set through outages, backs off, and refetches for unknown `kid`s at most once per cooldown.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use jwkstash_core::{
    Cache, Entry, FetchError, Fetched, KeySource, SharedClock, SingleFlight, Validators,
};

use crate::error::{KeySetError, KeysUnavailable, RefreshError};
use crate::keyset::KeySet;
use crate::policy::FreshnessPolicy;
use crate::stats::Counters;

/// A cached key set with its times.
pub(crate) type KeyEntry = Entry<Arc<KeySet>>;
type LoadResult = Result<KeyEntry, Arc<RefreshError>>;

pub(crate) struct KeyStore {
    source: Arc<dyn KeySource>,
    cache: Arc<dyn Cache<Arc<KeySet>>>,
    cache_key: String,
    clock: SharedClock,
    policy: FreshnessPolicy,
    /// One load at a time for this source, whatever started it.
    flights: SingleFlight<(), LoadResult>,
    /// Set while a background refresh is pending, so hits in the refresh window do not all
    /// contend for the flight lock.
    refresh_claimed: AtomicBool,
    health: Health,
    /// When the last unknown-kid refetch started (ms since the epoch; 0: never).
    kid_refetch_ms: AtomicU64,
    /// Kids found absent, with the fingerprint of the set they were absent from.
    absent: moka::sync::Cache<Box<str>, (u64, SystemTime)>,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source.id())
            .field("cache", &self.cache.name())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis().try_into().unwrap_or(u64::MAX))
}

impl KeyStore {
    pub(crate) fn new(
        source: Arc<dyn KeySource>,
        cache: Arc<dyn Cache<Arc<KeySet>>>,
        cache_key: String,
        clock: SharedClock,
        policy: FreshnessPolicy,
        counters: Arc<Counters>,
    ) -> Self {
        let absent = moka::sync::Cache::builder()
            .max_capacity(policy.negative_cache_capacity)
            .build();
        Self {
            source,
            cache,
            cache_key,
            clock,
            policy,
            flights: SingleFlight::new(),
            refresh_claimed: AtomicBool::new(false),
            health: Health::default(),
            kid_refetch_ms: AtomicU64::new(0),
            absent,
            counters,
        }
    }

    /// The key set to verify with now.
    ///
    /// * fresh: returned at once; inside the refresh-ahead window a background refresh starts.
    /// * stale (past `fresh_until`, within `max_stale`): refreshed first, unless the source is
    ///   backing off after failures; if the refresh fails the stale set is served.
    /// * absent or past `max_stale`: loaded (coalesced); failure is [`KeysUnavailable`].
    pub(crate) async fn current(self: &Arc<Self>) -> Result<KeyEntry, KeysUnavailable> {
        let cached = self.cached().await;
        let now = self.clock.now();
        match cached {
            Some(entry) if entry.is_fresh(now) => {
                if now >= self.refresh_at(&entry) {
                    self.refresh_in_background(&entry, now);
                }
                Ok(entry)
            }
            Some(stale) if stale.is_usable(now) => Ok(self.refresh_stale(stale, now).await),
            _ => self.load_cold(now).await,
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
        if self.known_absent(kid, seen.value.fingerprint(), now)
            || self.health.retry_after(now).is_some()
        {
            self.counters.kid_refetch_suppressed();
            return Ok(None);
        }
        let store = Arc::clone(self);
        let current = seen.clone();
        let outcome = self
            .flights
            .run_if(
                (),
                || self.claim_kid_refetch(now),
                || store.load(Some(current)),
            )
            .await;
        let Some(outcome) = outcome else {
            self.counters.kid_refetch_suppressed();
            // A refetch may have landed since `seen` was read: retry with the newer set.
            return Ok(self
                .cached()
                .await
                .filter(|latest| latest.value.fingerprint() != seen.value.fingerprint()));
        };
        self.counters.kid_refetch();
        let entry = outcome
            .map_err(|error| Arc::new(RefreshError::from(error)))
            .and_then(|loaded| loaded)
            .map_err(|cause| KeysUnavailable::new(cause, self.health.retry_after(now)))?;
        if !entry.value.contains_kid(kid) {
            self.absent
                .insert(kid.into(), (entry.value.fingerprint(), self.clock.now()));
        }
        Ok(Some(entry))
    }

    async fn cached(&self) -> Option<KeyEntry> {
        match self.cache.get(&self.cache_key).await {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(%error, "key cache read failed; treated as a miss");
                None
            }
        }
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
        let store = Arc::clone(self);
        let current = entry.clone();
        let started = self.flights.start((), move || async move {
            let _release = ReleaseClaim(Arc::clone(&store));
            store.load(Some(current)).await
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
            .run((), || store.load(current))
            .await
            .map_err(|error| Arc::new(RefreshError::from(error)))?
    }

    /// Fetches, parses and stores a new set (or extends `current` on 304).
    async fn load(self: Arc<Self>, current: Option<KeyEntry>) -> LoadResult {
        let validators = Validators {
            etag: current
                .as_ref()
                .and_then(|entry| entry.etag.as_deref())
                .map(str::to_owned),
        };
        self.counters.fetch();
        let fetched = self.source.fetch(&validators).await;
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
        match outcome {
            Ok(entry) => {
                self.health.succeeded();
                if let Err(error) = self.cache.put(&self.cache_key, entry.clone()).await {
                    tracing::warn!(%error, "could not store the key set");
                }
                tracing::debug!(
                    source = self.source.id(),
                    fingerprint = entry.value.fingerprint(),
                    "key set loaded"
                );
                Ok(entry)
            }
            Err(error) => {
                self.counters.fetch_failed();
                let error = Arc::new(error);
                let delay = self.health.failed(now, &self.policy, Arc::clone(&error));
                tracing::warn!(%error, source = self.source.id(), retry_in = ?delay, "key set fetch failed");
                Err(error)
            }
        }
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
        let now = millis(now);
        let last = self.kid_refetch_ms.load(Ordering::Acquire);
        let cooldown =
            u64::try_from(self.policy.unknown_kid_cooldown.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now < last.saturating_add(cooldown) {
            return false;
        }
        self.kid_refetch_ms.store(now.max(1), Ordering::Release);
        true
    }

    fn known_absent(&self, kid: &str, fingerprint: u64, now: SystemTime) -> bool {
        self.absent.get(kid).is_some_and(|(absent_from, since)| {
            absent_from == fingerprint && now < since + self.policy.negative_ttl
        })
    }
}

/// Clears the background-refresh claim when the refresh ends, however it ends.
struct ReleaseClaim(Arc<KeyStore>);

impl Drop for ReleaseClaim {
    fn drop(&mut self) {
        self.0.refresh_claimed.store(false, Ordering::Release);
    }
}

/// Consecutive failures of the source and the backoff they impose.
#[derive(Default)]
struct Health {
    failures: AtomicU32,
    /// No fetch before this instant (ms since the epoch; 0: none pending).
    retry_at_ms: AtomicU64,
    last_error: Mutex<Option<Arc<RefreshError>>>,
}

impl Health {
    /// How long until the next fetch may be tried, if the source is backing off.
    fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        let now = millis(now);
        (now < retry_at).then(|| Duration::from_millis(retry_at - now))
    }

    fn failed(
        &self,
        now: SystemTime,
        policy: &FreshnessPolicy,
        error: Arc<RefreshError>,
    ) -> Duration {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        // Full backoff scaled into [80 %, 100 %] so a fleet does not retry in lockstep.
        let delay = policy
            .backoff(failures)
            .mul_f64(0.8 + 0.2 * fastrand::f64());
        let retry_at = millis(now).saturating_add(delay.as_millis().try_into().unwrap_or(u64::MAX));
        self.retry_at_ms.store(retry_at, Ordering::Release);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
        delay
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Release);
        self.retry_at_ms.store(0, Ordering::Release);
    }

    fn last_error(&self) -> Arc<RefreshError> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| {
                Arc::new(RefreshError::Fetch(FetchError::Other(
                    "no fetch yet".into(),
                )))
            })
    }
}
