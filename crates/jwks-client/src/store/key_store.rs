//! The key store of one source: reads the cache stack, refreshes ahead of expiry, serves the last
//! good set through outages, backs off, and refetches for unknown `kid`s at most once per cooldown.
//! With a shared tier, [`Fleet`] makes the instances fetch once for all of them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use jwkstash_core::{
    Cache, Entry, FetchError, Fetched, KeySource, SharedClock, SingleFlight, Tier, Validators,
    from_unix_millis, unix_millis,
};

use crate::jose::error::KeySetError;
use crate::jose::keyset::KeySet;
use crate::stats::Counters;
use crate::store::backoff::Health;
use crate::store::error::{KeysUnavailable, RefreshError};
use crate::store::events::{Events, KeyEvent};
use crate::store::freshness::{self, Action, SetTimes, Situation};
use crate::store::kid_query::KidQuery;
use crate::store::load::{
    Follower, Host, KeyEntry, Listening, LoadResult, Loader, Reason, supersedes,
};
use crate::store::policy::FreshnessPolicy;
use crate::store::tiers::KeyTiers;

/// What a token with an unknown `kid` is told to wait before it retries when the refetch
/// did not finish in time.
const PENDING_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How far in the future a shared entry's `fetched_at` may lie (clock skew between instances).
const SHARED_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// A kid found absent from a set: when that set was fetched, and the latest `iat` of a token
/// of the kid that was asked about before that fetch (such tokens, and older ones, are
/// answered by it whatever the provider's clock).
#[derive(Debug, Clone, Copy)]
struct Absent {
    fetched_at: SystemTime,
    covered_iat: Option<u64>,
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
    /// The cache stack: the near tier, over the shared tier in a fleet. The only reader of both.
    pub(crate) tiers: KeyTiers,
    pub(crate) cache_key: String,
    pub(crate) clock: SharedClock,
    pub(crate) policy: FreshnessPolicy,
    /// How sets are brought: from the source, or through the fleet.
    loader: Box<dyn Loader>,
    /// One load at a time for this source, whatever started it.
    flights: SingleFlight<(), LoadResult>,
    /// One read of the cache stack at a time while nothing is pinned: a cold start's stampede
    /// reads each tier (Redis included) once, not once per caller.
    reads: SingleFlight<(), Option<KeyEntry>>,
    /// Set while a background refresh is pending, so hits in the refresh window do not all
    /// contend for the flight lock.
    refresh_claimed: AtomicBool,
    /// How many loads are running (read lock-free by [`freshness::decide`]).
    loads: AtomicUsize,
    health: Health,
    pub(crate) events: Events,
    /// When the last unknown-kid refetch started (ms since the epoch; 0: never).
    kid_refetch_ms: AtomicU64,
    /// When the last forced refresh started (ms since the epoch; 0: never).
    forced_ms: AtomicU64,
    /// Set while a refetch for a kid the cooldown held back waits for the cooldown's end.
    kid_refetch_scheduled: AtomicBool,
    /// Kids found absent from a set, by their slot (which names the set's fingerprint), with
    /// when; made on the first unknown kid (most verifiers never see one).
    absent: std::sync::OnceLock<moka::sync::Cache<String, Absent>>,
    /// The store's place on the fleet's invalidation listener, given up with the store.
    listener: Mutex<Option<Box<dyn Listening>>>,
    pub(crate) counters: Arc<Counters>,
    /// A random name of this verifier in logs, so that an operator can tell which instance of
    /// a fleet fetched.
    pub(crate) instance: u32,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source.id())
            .field("shared_tier", &self.tiers.shared().is_some())
            .field("loader", &self.loader.name())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A store on its own: every load is a fetch from the source.
pub(crate) struct Alone;

#[async_trait::async_trait]
impl Loader for Alone {
    fn name(&self) -> &'static str {
        "alone"
    }

    async fn load(&self, host: &dyn Host, current: Option<KeyEntry>, reason: Reason) -> LoadResult {
        host.fetch(current, &reason).await
    }

    fn listen(&self, _: &str, _: SystemTime, _: Weak<dyn Follower>) -> Option<Box<dyn Listening>> {
        None
    }
}

/// The parts a store is built from.
pub(crate) struct StoreParts {
    pub(crate) source: Arc<dyn KeySource>,
    pub(crate) tiers: KeyTiers,
    pub(crate) cache_key: String,
    pub(crate) clock: SharedClock,
    pub(crate) policy: FreshnessPolicy,
    pub(crate) loader: Box<dyn Loader>,
    pub(crate) counters: Arc<Counters>,
}

impl KeyStore {
    pub(crate) fn new(parts: StoreParts) -> Arc<Self> {
        let store = Arc::new(Self {
            pinned: ArcSwapOption::empty(),
            source: parts.source,
            tiers: parts.tiers,
            cache_key: parts.cache_key,
            clock: parts.clock,
            policy: parts.policy,
            loader: parts.loader,
            flights: SingleFlight::new(),
            reads: SingleFlight::new(),
            refresh_claimed: AtomicBool::new(false),
            loads: AtomicUsize::new(0),
            health: Health::default(),
            events: Events::default(),
            kid_refetch_ms: AtomicU64::new(0),
            forced_ms: AtomicU64::new(0),
            kid_refetch_scheduled: AtomicBool::new(false),
            absent: std::sync::OnceLock::new(),
            listener: Mutex::new(None),
            counters: parts.counters,
            instance: fastrand::u32(..),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            store.listen();
        }
        store
    }

    /// The key set to verify with now, as [`freshness::decide`] says: a usable set (fresh or
    /// stale within `max_stale`) is returned at once, starting a background refresh when one
    /// is due; only a verifier without a usable set waits for a load, and never while the
    /// source backs off.
    pub(crate) async fn current(self: &Arc<Self>) -> Result<KeyEntry, KeysUnavailable> {
        let now = self.clock.now();
        // Under a guard, like the hit path: no reference count while the set is fresh.
        if let Some(pinned) = self.pinned.load().as_deref()
            && now < pinned.refresh_at
        {
            return Ok(pinned.entry.clone());
        }
        let pinned = self.pinned.load_full();
        // The pinned set is the newest this verifier knows of (loads and the fleet listener pin
        // what they bring); the cache stack matters only when nothing is pinned yet.
        let held = match pinned {
            Some(pinned) => Some(pinned.entry.clone()),
            None => self.cached_once().await,
        };
        let backing_off = self.health.retry_after(now);
        let action = freshness::decide(Situation {
            set: held.as_ref().map(times),
            backing_off,
            loading: self.loads.load(Ordering::Acquire) > 0,
            now,
            policy: &self.policy,
        });
        let entry = match (action, held) {
            (Action::WaitForLoad, _) | (_, None) => {
                self.listen();
                return self.wait_for_load().await;
            }
            (Action::Refuse(retry_after), _) => {
                return Err(KeysUnavailable::new(
                    self.health.last_error(),
                    Some(retry_after),
                ));
            }
            (_, Some(entry)) => entry,
        };
        self.pin(&entry);
        if action.is_stale() {
            self.counters.stale_served();
            self.events
                .served_stale(entry.fresh_until, entry.usable_until);
        }
        if action.refreshes() {
            self.refresh_in_background(&entry, now);
        }
        Ok(entry)
    }

    /// Called when a token's kid is not in `seen`, or its key in `seen` failed the signature
    /// (`query` says which). Refetches at most once per cooldown (joining a load already
    /// running) and waits for it at most `unknown_kid_wait`; returns the set to look the kid
    /// up in again, or `None` when the token is to be refused. Valid tokens never wait here:
    /// only unknown kids and failed signatures reach it.
    ///
    /// An unknown kid is refused (`None`, 401) only when the provider said it is absent: a set
    /// that lacks it was fetched after the token was issued (its unverified `iat` plus the
    /// leeway for the provider's clock, or its arrival without `iat`). A key is published
    /// before it signs, so no key published since could make such a token valid. Until then
    /// — while the source backs off, while the cooldown holds the refetch back (another kid,
    /// perhaps junk, spent it), or when the refetch does not finish in time — the answer is
    /// [`KeysUnavailable`] (503 with `Retry-After`), never "unknown kid": the kid may belong to
    /// a rotation. A kid the cooldown held back is refetched for when the cooldown ends,
    /// without waiting for another token. For a failed signature the provider did say which
    /// key the kid names, so the token stays refused (`None`). Either way a refetch that runs
    /// goes on in the background and serves the tokens that come after.
    pub(crate) async fn refetch_for_kid(
        self: &Arc<Self>,
        query: KidQuery,
        seen: &KeyEntry,
    ) -> Result<Option<KeyEntry>, KeysUnavailable> {
        let asked_at = self.clock.now();
        let fingerprint = seen.value.fingerprint();
        let unknown = query.is_unknown();
        if self.confirmed_absent(&query, seen, asked_at) {
            self.counters.kid_refetch_suppressed();
            return Ok(None);
        }
        if let Some(retry_after) = self.health.retry_after(asked_at) {
            self.counters.kid_refetch_suppressed();
            if !unknown {
                return Ok(None);
            }
            return Err(KeysUnavailable::new(
                self.health.last_error(),
                Some(retry_after),
            ));
        }
        let store = Arc::clone(self);
        let current = seen.clone();
        let refetch = self
            .flights
            .run_if((), || self.claim_kid_refetch(asked_at), {
                let query = query.clone();
                || store.load(Some(current), Reason::Kid(query))
            });
        let wait = self.policy.unknown_kid_wait;
        let Ok(outcome) = tokio::time::timeout(wait, refetch).await else {
            self.counters.kid_refetch_timed_out();
            tracing::debug!(
                source = self.source.id(),
                "kid refetch: it goes on in the background"
            );
            if !unknown {
                return Ok(None);
            }
            let pending = Arc::new(RefreshError::Pending { waited: wait });
            return Err(KeysUnavailable::new(pending, Some(PENDING_RETRY_AFTER)));
        };
        let Some(outcome) = outcome else {
            self.counters.kid_refetch_suppressed();
            tracing::debug!(
                source = self.source.id(),
                "kid refetch suppressed by the cooldown"
            );
            // A refetch may have landed since `seen` was read: retry with the newer set.
            if let Some(latest) = self
                .cached()
                .await
                .filter(|latest| latest.value.fingerprint() != fingerprint)
            {
                return Ok(Some(latest));
            }
            return self.not_yet_answered(query, seen.clone(), asked_at);
        };
        self.counters.kid_refetch();
        let loaded = outcome
            .map_err(|error| Arc::new(RefreshError::from(error)))
            .and_then(|loaded| loaded);
        match loaded {
            // Fetched after the kid was asked about, or it answers the token: look again.
            Ok(entry) if !unknown || query.answered_by(&entry.value) => Ok(Some(entry)),
            Ok(entry) if entry.fetched_at >= asked_at => {
                self.note_absent(&query, &entry);
                Ok(Some(entry))
            }
            // A set older than the question (the fleet's cooldown held the refetch back).
            Ok(entry) => self.not_yet_answered(query, entry, asked_at),
            Err(_) if !unknown => Ok(None),
            Err(cause) => Err(KeysUnavailable::new(
                cause,
                self.health.retry_after(asked_at),
            )),
        }
    }

    /// The answer for a kid the provider has not been asked about since `asked_at`, with
    /// `latest` the newest set held: refused if it is known to be absent (by this instance or
    /// the fleet) or its key failed a signature; otherwise 503 until the cooldown ends, when a
    /// refetch runs for it.
    fn not_yet_answered(
        self: &Arc<Self>,
        query: KidQuery,
        latest: KeyEntry,
        asked_at: SystemTime,
    ) -> Result<Option<KeyEntry>, KeysUnavailable> {
        if !query.is_unknown() || self.confirmed_absent(&query, &latest, asked_at) {
            return Ok(None);
        }
        let retry_after = self.kid_cooldown_left(asked_at).max(PENDING_RETRY_AFTER);
        self.refetch_when_cooldown_ends(query, latest, retry_after);
        let cause = Arc::new(RefreshError::KidRefetchCoolingDown { retry_after });
        Err(KeysUnavailable::new(cause, Some(retry_after)))
    }

    /// Schedules one refetch for `query` when the unknown-kid cooldown ends (one at a time per
    /// store): the first token of a rotated key that a cooldown held back is then answered by
    /// its retry, whatever other tokens arrive meanwhile. Still bound by the cooldown and the
    /// backoff, so it adds no fetch to a flood's one per cooldown.
    fn refetch_when_cooldown_ends(
        self: &Arc<Self>,
        query: KidQuery,
        current: KeyEntry,
        after: Duration,
    ) {
        if self.kid_refetch_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = Arc::downgrade(self);
        // From now, not from when the task first runs.
        let at = tokio::time::Instant::now() + after;
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let Some(store) = store.upgrade() else { return };
            let _scheduled = ClearOnDrop(Arc::clone(&store), |store| &store.kid_refetch_scheduled);
            let latest = store
                .pinned
                .load_full()
                .map_or(current, |pinned| pinned.entry.clone());
            let now = store.clock.now();
            if query.answered_by(&latest.value) || store.confirmed_absent(&query, &latest, now) {
                return;
            }
            let loader = Arc::clone(&store);
            let _ = store
                .flights
                .run_if(
                    (),
                    || store.health.retry_after(now).is_none() && store.claim_kid_refetch(now),
                    || loader.load(Some(latest), Reason::Kid(query)),
                )
                .await;
        });
    }

    /// How long until the unknown-kid cooldown lets the next refetch run, in whole seconds
    /// (rounded up, like a `Retry-After` header).
    fn kid_cooldown_left(&self, now: SystemTime) -> Duration {
        let last = self.kid_refetch_ms.load(Ordering::Acquire);
        let ends = from_unix_millis(last) + self.policy.unknown_kid_cooldown;
        let left = ends.duration_since(now).unwrap_or_default();
        Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    /// Takes the fleet's unknown-kid refetch claim, made at `at` by another instance, as this
    /// instance's: its cooldown then ends when the fleet's does.
    pub(crate) fn kid_refetch_claimed_at(&self, at: SystemTime) {
        self.kid_refetch_ms
            .store(unix_millis(at).max(1), Ordering::Release);
    }

    /// Whether the query's unknown kid is known to be absent for this token: missing from a
    /// set fetched after the token was issued (`held`, or one that this instance or the fleet
    /// found lacking it within `negative_ttl`), or from a refetch made for a token of the kid
    /// issued no earlier than this one (by the provider's own clock).
    fn confirmed_absent(&self, query: &KidQuery, held: &KeyEntry, now: SystemTime) -> bool {
        let Some(slot) = query.absent_slot() else {
            return false;
        };
        if !query.answered_by(&held.value) && !query.issued_after(held.fetched_at) {
            return true;
        }
        self.known_absent(slot, now).is_some_and(|known| {
            !query.issued_after(known.fetched_at)
                || known
                    .covered_iat
                    .zip(query.iat())
                    .is_some_and(|(covered, iat)| iat <= covered)
        })
    }

    /// Fetches now, whatever the set's freshness and the backoff (an operator's call after an
    /// emergency rotation): at most one per `min_refresh_interval` (fleet-wide with a shared
    /// tier, whose other instances then hear of the new set); calls within it, or while a load
    /// runs, share that load. Returns the set in use afterwards, and whether this call fetched.
    pub(crate) async fn refresh(self: &Arc<Self>) -> Result<(KeyEntry, bool), KeysUnavailable> {
        let now = self.clock.now();
        let store = Arc::clone(self);
        let current = self.pinned.load_full().map(|pinned| pinned.entry.clone());
        // Forced fetches run only here, one at a time: this call made one if it started the
        // load (joiners do not run the claim) and the forced count grew meanwhile (a fleet
        // member may find the set another instance forced).
        let forced_before = self.counters.snapshot().fetches_forced;
        let started = AtomicBool::new(false);
        let loaded = self
            .flights
            .run_if(
                (),
                || {
                    let claimed =
                        claim_period(&self.forced_ms, self.policy.min_refresh_interval, now);
                    if claimed {
                        // A set fetched now answers any unknown kid for a cooldown as well as
                        // a refetch for it would.
                        self.kid_refetch_ms
                            .store(unix_millis(now).max(1), Ordering::Release);
                    }
                    started.store(claimed, Ordering::Relaxed);
                    claimed
                },
                || store.load(current, Reason::Forced),
            )
            .await;
        let fetched = started.load(Ordering::Relaxed)
            && self.counters.snapshot().fetches_forced > forced_before;
        let unavailable = |cause| KeysUnavailable::new(cause, self.health.retry_after(now));
        match loaded {
            Some(Ok(loaded)) => loaded.map(|entry| (entry, fetched)).map_err(unavailable),
            Some(Err(error)) => Err(unavailable(Arc::new(RefreshError::from(error)))),
            // Refreshed within the interval: the set that brought is the one in use.
            None => self.current().await.map(|entry| (entry, false)),
        }
    }

    /// Drops the set: the pinned one, and the cache stack's entry (the shared tier's too). The
    /// next verification loads afresh and waits for it.
    pub(crate) async fn invalidate(&self) -> Result<(), jwkstash_core::CacheError> {
        self.pinned.store(None);
        Cache::<Arc<KeySet>>::remove(&self.tiers, &self.cache_key).await
    }

    /// [`cached`](Self::cached), shared by every caller that asks while a read runs.
    async fn cached_once(self: &Arc<Self>) -> Option<KeyEntry> {
        let store = Arc::clone(self);
        self.reads
            .run((), move || async move { store.cached().await })
            .await
            .ok()
            .flatten()
    }

    /// Reads the cache stack, counting which tier answered. A set from the shared or snapshot
    /// tier is held to this verifier's policy first ([`clamp_outer`](Self::clamp_outer)).
    async fn cached(&self) -> Option<KeyEntry> {
        let read = self
            .tiers
            .read(&self.cache_key, |entry| self.clamp_outer(entry))
            .await;
        match read {
            Ok(Some((entry, Tier::Near))) => {
                self.counters.near_hit();
                Some(entry)
            }
            Ok(Some((entry, Tier::Snapshot))) => {
                self.counters.snapshot_hit();
                tracing::info!(
                    source = self.source.id(),
                    fetched_at = unix_millis(entry.fetched_at),
                    "key set read from the snapshot tier"
                );
                Some(entry)
            }
            Ok(Some((entry, _))) => {
                self.counters.shared_hit();
                Some(entry)
            }
            Ok(None) => {
                self.counters.cache_miss();
                None
            }
            Err(error) => {
                tracing::warn!(%error, "near tier read failed; treated as a miss");
                self.counters.cache_miss();
                None
            }
        }
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

    /// Makes `entry` the set verified with, unless it or a newer one is pinned already.
    pub(crate) fn pin(&self, entry: &KeyEntry) {
        let pinned = self.pinned.load();
        if pinned
            .as_deref()
            .is_some_and(|pinned| !supersedes(entry, &pinned.entry))
        {
            return;
        }
        self.counters.key_set(entry.fetched_at, self.clock.now());
        let refresh_at = freshness::refresh_at(times(entry), &self.policy);
        let replaced = self.pinned.rcu(|pinned| match pinned {
            Some(pinned) if !supersedes(entry, &pinned.entry) => Some(Arc::clone(pinned)),
            _ => Some(Arc::new(Pinned {
                entry: entry.clone(),
                refresh_at,
            })),
        });
        if replaced
            .as_deref()
            .is_none_or(|replaced| supersedes(entry, &replaced.entry))
        {
            let old = replaced.as_deref().map(|replaced| &*replaced.entry.value);
            self.events.changed(old, &entry.value);
        }
    }

    /// Starts one background refresh unless one is pending; callers never wait for it.
    fn refresh_in_background(self: &Arc<Self>, entry: &KeyEntry, now: SystemTime) {
        if self.health.retry_after(now).is_some()
            || self.refresh_claimed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tracing::debug!(
            source = self.source.id(),
            stale = !entry.is_fresh(now),
            "refreshing the key set in the background"
        );
        let store = Arc::clone(self);
        let current = entry.clone();
        let reason = if entry.is_fresh(now) {
            Reason::RefreshAhead
        } else {
            Reason::Stale
        };
        // Made before the task: the claim ends with the load however it ends, also when its
        // task is dropped before it ever runs (a runtime shutting down), and at once when
        // another load is running (it will bring a new set) and the closure is dropped unused.
        let release = ReleaseClaim(Arc::clone(self));
        self.flights.start((), move || async move {
            let _release = release;
            store.load(Some(current), reason).await
        });
    }

    /// Waits for a load: joins the one running, or starts one unless the source is backing off.
    async fn wait_for_load(self: &Arc<Self>) -> Result<KeyEntry, KeysUnavailable> {
        self.counters.waited_for_load();
        let store = Arc::clone(self);
        let now = self.clock.now();
        let loaded = self
            .flights
            .run_if(
                (),
                || self.health.retry_after(now).is_none(),
                || store.load(None, Reason::Cold),
            )
            .await;
        let unavailable = |cause| KeysUnavailable::new(cause, self.health.retry_after(now));
        match loaded {
            Some(Ok(loaded)) => loaded.map_err(unavailable),
            Some(Err(error)) => Err(unavailable(Arc::new(RefreshError::from(error)))),
            None => Err(KeysUnavailable::new(
                self.health.last_error(),
                self.health.retry_after(now),
            )),
        }
    }

    /// Brings a set newer than `current`: one that landed since `current` was read (another
    /// load finished in between), else through the fleet when there is one, else from the
    /// source. One warning per failed fetch, whoever waits for it.
    async fn load(self: Arc<Self>, current: Option<KeyEntry>, reason: Reason) -> LoadResult {
        let _loading = Loading::start(&self.loads);
        let started = self.clock.now();
        // A forced refresh fetches whatever landed: that is what the operator asked for.
        if !matches!(reason, Reason::Forced)
            && let Some(landed) = self.landed_since(current.as_ref(), started).await
        {
            return Ok(landed);
        }
        let outcome = self.loader.load(&*self, current, reason.clone()).await;
        match &outcome {
            Ok(entry) => {
                self.health.succeeded();
                self.pin(entry);
                self.note_if_absent(&reason, entry, started);
            }
            Err(error) => {
                let delay = self
                    .health
                    .failed(self.clock.now(), &self.policy, Arc::clone(error));
                self.events.send(|| KeyEvent::RefreshFailed {
                    cause: Arc::clone(error),
                    retry_after: delay,
                });
                let source = self.source.id();
                // Another instance's failure was its warning, not ours.
                if matches!(
                    **error,
                    RefreshError::FleetFetchFailed | RefreshError::FleetBackingOff
                ) {
                    tracing::debug!(%error, source, retry_in = ?delay, "key set fetch failed");
                } else {
                    tracing::warn!(%error, source, retry_in = ?delay, "key set fetch failed");
                }
            }
        }
        outcome
    }

    /// A fresh set newer than `seen` in the pinned slot or the near tier: a load that finished
    /// after the caller read the cache and before this load started. Without this check, a
    /// caller that read the empty cache just before the first load ended would fetch again.
    async fn landed_since(&self, seen: Option<&KeyEntry>, now: SystemTime) -> Option<KeyEntry> {
        let landed = |entry: &KeyEntry| {
            entry.is_fresh(now) && seen.is_none_or(|seen| supersedes(entry, seen))
        };
        if let Some(pinned) = self.pinned.load().as_deref()
            && landed(&pinned.entry)
        {
            return Some(pinned.entry.clone());
        }
        let near = self.tiers.near().get(&self.cache_key).await;
        near.ok().flatten().filter(landed)
    }

    /// Remembers an unknown kid as absent, but only from a set the provider sent after the
    /// refetch for it started: a set that merely landed meanwhile says nothing of the kid.
    fn note_if_absent(&self, reason: &Reason, entry: &KeyEntry, started: SystemTime) {
        if let Reason::Kid(query) = reason
            && entry.fetched_at >= started
        {
            self.note_absent(query, entry);
        }
    }

    /// Remembers the query's unknown kid as absent from `entry` if it is, a set fetched after
    /// the query's token arrived: that token, and any of the kid issued no later, are answered.
    fn note_absent(&self, query: &KidQuery, entry: &KeyEntry) {
        let Some(slot) = query.absent_from(&entry.value) else {
            return;
        };
        let known = self.known_absent(&slot, self.clock.now());
        let covered_iat = known
            .filter(|known| known.fetched_at == entry.fetched_at)
            .and_then(|known| known.covered_iat)
            .max(query.iat());
        let absent = Absent {
            fetched_at: entry.fetched_at,
            covered_iat,
        };
        self.absent().insert(slot, absent);
    }

    /// Fetches, parses and stores a new set (or extends `current` on 304).
    pub(crate) async fn fetch(&self, current: Option<KeyEntry>, reason: &Reason) -> LoadResult {
        let validators = Validators::with_etag(
            current
                .as_ref()
                .and_then(|entry| entry.etag.as_deref())
                .map(str::to_owned),
        );
        tracing::debug!(
            source = self.source.id(),
            instance = self.instance,
            reason = reason.code(),
            "fetching the key set"
        );
        self.counters.fetch();
        count_fetch(&self.counters, reason);
        let started = std::time::Instant::now();
        // Every source, whatever its own deadlines: no caller waits on a hung one forever.
        let timeout = self.policy.fetch_timeout;
        let fetched = tokio::time::timeout(timeout, self.source.fetch(&validators))
            .await
            .unwrap_or(Err(FetchError::Timeout(timeout)));
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
        if let Err(error) = self.tiers.put(&self.cache_key, entry.clone()).await {
            tracing::warn!(%error, "could not store the key set");
        }
        self.counters.fetch_succeeded();
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

    /// The health of the keys now, from the pinned set and the backoff: no I/O.
    pub(crate) fn health(&self) -> freshness::KeyHealth {
        let now = self.clock.now();
        let pinned = self.pinned.load();
        let set = pinned.as_deref().map(|pinned| times(&pinned.entry));
        freshness::KeyHealth::of(set, self.health.retry_after(now), now)
    }

    /// The key source's id, for logs.
    pub(crate) fn source_id(&self) -> &str {
        self.source.id()
    }

    /// How long the fleet waits after an upstream attempt before the next one: zero while the
    /// source is healthy, else the backoff for the failures this instance has seen.
    pub(crate) fn attempt_period(&self) -> Duration {
        match self.health.failures() {
            0 => Duration::ZERO,
            failures => self.policy.backoff(failures),
        }
    }

    /// An entry read from the shared or snapshot tier, held to this verifier's policy: refused if it was
    /// fetched in the future, its freshness cut to `max_ttl` and its usability to `max_stale`
    /// past that, whatever the writer claimed, and refused if that leaves it unusable now.
    pub(crate) fn clamp_outer(&self, entry: KeyEntry) -> Option<KeyEntry> {
        let now = self.clock.now();
        if entry.fetched_at > now + SHARED_CLOCK_SKEW {
            tracing::debug!(
                source = self.source.id(),
                "refused a shared set fetched in the future"
            );
            return None;
        }
        let fresh_until = entry
            .fresh_until
            .min(entry.fetched_at + self.policy.max_ttl);
        let usable_until = entry.usable_until.min(fresh_until + self.policy.max_stale);
        if now >= usable_until {
            // Past what this verifier would serve: not a hit of any tier.
            return None;
        }
        if fresh_until == entry.fresh_until && usable_until == entry.usable_until {
            return Some(entry);
        }
        let etag = entry.etag.clone();
        Some(Entry::new(entry.value, entry.fetched_at, fresh_until, usable_until).with_etag(etag))
    }

    /// Claims the unknown-kid refetch if the cooldown has passed. Runs under the flight lock.
    fn claim_kid_refetch(&self, now: SystemTime) -> bool {
        claim_period(&self.kid_refetch_ms, self.policy.unknown_kid_cooldown, now)
    }

    fn absent(&self) -> &moka::sync::Cache<String, Absent> {
        self.absent.get_or_init(|| {
            moka::sync::Cache::builder()
                .max_capacity(self.policy.negative_cache_capacity)
                .build()
        })
    }

    /// What is known of a kid found absent (its `slot`), if found within `negative_ttl` of
    /// `now`.
    fn known_absent(&self, slot: &str, now: SystemTime) -> Option<Absent> {
        self.absent
            .get()
            .and_then(|absent| absent.get(slot))
            .filter(|absent| now < absent.fetched_at + self.policy.negative_ttl)
    }

    /// Remembers that the kid of `slot` was absent from a set fetched at `at` by the fleet.
    pub(crate) fn remember_absent(&self, slot: &str, at: SystemTime) {
        let covered_iat = self
            .known_absent(slot, at)
            .and_then(|known| known.covered_iat);
        self.absent().insert(
            slot.to_owned(),
            Absent {
                fetched_at: at,
                covered_iat,
            },
        );
    }

    /// Starts the loader's listener once (a fleet's invalidations; nothing alone).
    pub(crate) fn listen(self: &Arc<Self>) {
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if listener.is_none() {
            let follower: Arc<dyn Follower> = Arc::clone(self) as Arc<dyn Follower>;
            *listener =
                self.loader
                    .listen(&self.cache_key, self.clock.now(), Arc::downgrade(&follower));
        }
    }
}

/// Claims a period that started at `last` (ms since the epoch; 0: never) if `period` has
/// passed by `now`. Called under the flight lock, so one caller claims.
fn claim_period(last: &AtomicU64, period: Duration, now: SystemTime) -> bool {
    let now = unix_millis(now);
    let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    let previous = last.load(Ordering::Acquire);
    if previous != 0 && now < previous.saturating_add(period) {
        return false;
    }
    last.store(now.max(1), Ordering::Release);
    true
}

/// The times [`freshness::decide`] looks at.
fn times(entry: &KeyEntry) -> SetTimes {
    SetTimes {
        fetched_at: entry.fetched_at,
        fresh_until: entry.fresh_until,
        usable_until: entry.usable_until,
    }
}

/// Counts an upstream fetch by why it ran.
fn count_fetch(counters: &Counters, reason: &Reason) {
    match reason {
        Reason::Cold => counters.fetch_cold(),
        Reason::RefreshAhead => counters.fetch_refresh_ahead(),
        Reason::Stale => counters.fetch_stale(),
        Reason::Kid(query) if query.is_unknown() => counters.fetch_unknown_kid(),
        Reason::Kid(_) => counters.fetch_reused_kid(),
        Reason::Forced => counters.fetch_forced(),
    }
}

/// Counts a running load for as long as it lives, however it ends.
struct Loading<'a>(&'a AtomicUsize);

impl<'a> Loading<'a> {
    fn start(loads: &'a AtomicUsize) -> Self {
        loads.fetch_add(1, Ordering::AcqRel);
        Self(loads)
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clears a flag of the store when dropped, however the task that holds it ends.
struct ClearOnDrop(Arc<KeyStore>, fn(&KeyStore) -> &AtomicBool);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        (self.1)(&self.0).store(false, Ordering::Release);
    }
}

/// Clears the background-refresh claim when the refresh ends, however it ends.
struct ReleaseClaim(Arc<KeyStore>);

impl Drop for ReleaseClaim {
    fn drop(&mut self) {
        self.0.refresh_claimed.store(false, Ordering::Release);
    }
}
