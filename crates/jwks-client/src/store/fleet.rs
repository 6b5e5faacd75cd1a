//! Fleet coordination over a shared tier: one instance fetches, the others wait for the shared
//! tier, and every instance hears about new sets.
//!
//! * Before fetching, read the shared tier: another instance may have fetched already.
//! * Take the lease (`SET NX PX` in Redis); the holder fetches, writes the shared tier and
//!   publishes an invalidation. The others wait for that message or poll the shared tier; when
//!   the lease is free again (released, or expired with a dead holder) one of them takes it and
//!   checks the shared tier before fetching.
//! * Kid refetches (an unknown kid, or a known kid whose key failed a signature) are claimed
//!   fleet-wide once per cooldown; kids found absent are marked in the shared tier so that no
//!   instance refetches for them again while the set is unchanged.
//! * If the shared tier fails, the instance fetches on its own: a Redis outage costs nothing
//!   but the sharing.

use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use jwkstash_core::{Invalidation, LeaseToken, SharedTier, unix_millis};
use tokio::time::Instant;

use crate::jose::keyset::KeySet;
use crate::store::error::RefreshError;
use crate::store::events::KeyEvent;
use crate::store::kid_query::KidQuery;
use crate::store::listener::Listener;
use crate::store::load::{Follower, Host, KeyEntry, Listening, LoadResult, Loader, Reason};

/// How often a waiting instance reads the shared tier when no invalidation arrives.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const KID_REFETCH_SLOT: &str = "kid-refetch";
const FETCH_FAILED_SLOT: &str = "fetch-failed";
/// When the fleet last tried the provider: the fleet-wide backoff.
const ATTEMPT_SLOT: &str = "attempt";
/// The claim slot of a shared tier entry ([`Lease::claim_period`](jwkstash_core::Lease)) that
/// records when the fleet last made a forced refresh of it: an operator's tool reads it with
/// `last_claimed` to tell a refresh shared within `min_refresh_interval` from none.
pub const FORCED_REFRESH_SLOT: &str = "forced";

/// The shared tier of a fleet member, for the lease, the claims and the invalidations; its
/// entries are read through the store's [`Tiered`](jwkstash_core::Tiered).
pub(crate) struct Fleet {
    pub(crate) shared: Arc<dyn SharedTier<Arc<KeySet>>>,
    pub(crate) lease_ttl: Duration,
    /// What the store's entry holds (issuers, source), announced in the tier's directory.
    pub(crate) about: serde_json::Map<String, serde_json::Value>,
    /// The tier's one listener in this process, found when the store starts listening.
    pub(crate) listener: OnceLock<Arc<Listener>>,
}

#[async_trait::async_trait]
impl Loader for Fleet {
    fn name(&self) -> &'static str {
        "fleet"
    }

    /// Brings a set newer than `current`, fetching upstream only if no other instance does.
    async fn load(&self, host: &dyn Host, current: Option<KeyEntry>, reason: Reason) -> LoadResult {
        self.load_for_fleet(host, current, reason).await
    }

    fn listen(
        &self,
        key: &str,
        now: SystemTime,
        follower: Weak<dyn Follower>,
    ) -> Option<Box<dyn Listening>> {
        let listener = self.listener.get_or_init(|| Listener::of(&self.shared));
        let registration = listener.register(key, follower);
        let (shared, key) = (Arc::clone(&self.shared), key.to_owned());
        let about = about_now(&self.about, now);
        tokio::spawn(async move { announce(&*shared, &key, &about).await });
        Some(Box::new(registration))
    }
}

impl Fleet {
    async fn load_for_fleet(
        &self,
        host: &dyn Host,
        current: Option<KeyEntry>,
        reason: Reason,
    ) -> LoadResult {
        let key = host.cache_key();
        let wanted = Wanted {
            reason: &reason,
            since: host.now(),
        };
        let mut current = current;
        // A forced refresh must fetch, whatever the shared tier holds (the interval between
        // two is claimed as holder).
        if !matches!(reason, Reason::Forced)
            && let Some(newer) = host.newer_in_shared(current.as_ref()).await
        {
            if wanted.answered_by(&newer) {
                return Ok(newer);
            }
            current = Some(newer);
        }
        let token = match self.shared.acquire(key, self.lease_ttl).await {
            Ok(Some(token)) => token,
            Ok(None) => match self.wait_for_holder(host, &mut current, &wanted).await {
                Waited::Delivered(entry) => return Ok(entry),
                Waited::Failed => return Err(Arc::new(RefreshError::FleetFetchFailed)),
                Waited::Acquired(token) => token,
                Waited::TimedOut => {
                    tracing::warn!("no lease holder delivered; fetching without the fleet");
                    return self
                        .mark_if_absent(host, &reason, host.fetch(current, &reason).await)
                        .await;
                }
            },
            Err(error) => {
                tracing::warn!(%error, "lease unavailable; fetching without the fleet");
                return self
                    .mark_if_absent(host, &reason, host.fetch(current, &reason).await)
                    .await;
            }
        };
        host.events().send(|| KeyEvent::LeaseTaken);
        let work = self.load_as_holder(host, current, &wanted);
        let outcome = self.while_holding(host, &token, work).await;
        if let Err(error) = self.shared.release(key, &token).await {
            tracing::debug!(%error, "lease release failed; it expires by itself");
        }
        outcome
    }

    /// Runs `work` while renewing the lease every third of its TTL, so that a live holder keeps
    /// it however slow the provider is; only a dead (or frozen) holder lets it expire. A lost
    /// lease is reported once, and the work goes on.
    async fn while_holding<T>(
        &self,
        host: &dyn Host,
        token: &LeaseToken,
        work: impl Future<Output = T>,
    ) -> T {
        let key = host.cache_key();
        let every = self.lease_ttl / 3;
        let heartbeat = async {
            let mut beats = tokio::time::interval_at(Instant::now() + every, every);
            beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                beats.tick().await;
                match self.shared.renew(key, token, self.lease_ttl).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // The tier may answer the next beat; the lease has a TTL's slack.
                    Err(error) => tracing::debug!(%error, "lease renewal failed"),
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            biased;
            outcome = &mut work => return outcome,
            () = heartbeat => {}
        }
        let lease_ttl = self.lease_ttl;
        host.events().send(|| KeyEvent::LeaseLost { lease_ttl });
        tracing::warn!(
            source = host.source_id(),
            instance = host.instance(),
            lease_ttl = ?self.lease_ttl,
            "lost the fleet's fetch lease while fetching (renewals did not reach the shared \
             tier in time); another instance may fetch too"
        );
        work.await
    }

    /// With the lease held: use what the previous holder delivered, or fetch.
    async fn load_as_holder(
        &self,
        host: &dyn Host,
        mut current: Option<KeyEntry>,
        wanted: &Wanted<'_>,
    ) -> LoadResult {
        let reason = wanted.reason;
        if matches!(reason, Reason::Forced) {
            if !self.may_force(host).await {
                // Another instance refreshed within the interval: its set is the one to use.
                let shared = host.newer_in_shared(current.as_ref()).await;
                return shared
                    .or(current)
                    .ok_or_else(|| Arc::new(RefreshError::FleetFetchFailed));
            }
            let outcome = self.fetch_as_holder(host, current, reason).await;
            return self.mark_if_absent(host, reason, outcome).await;
        }
        if let Some(newer) = host.newer_in_shared(current.as_ref()).await {
            if wanted.answered_by(&newer) {
                return Ok(newer);
            }
            current = Some(newer);
        }
        if let (Reason::Kid(query), Some(current)) = (reason, &current)
            && !self.may_refetch_for_kid(host, query).await
        {
            // Not a fetch: the caller cannot mark the kid absent from this set.
            return Ok(current.clone());
        }
        if !self.may_attempt(host).await {
            return Err(Arc::new(RefreshError::FleetBackingOff));
        }
        let outcome = self.fetch_as_holder(host, current, reason).await;
        self.mark_if_absent(host, reason, outcome).await
    }

    /// Fleet-wide backoff: at most one upstream attempt per backoff period across the fleet.
    /// Every instance counts the fleet's failures (its own fetches, and the failures of the
    /// holders it waited for), so the period grows alike everywhere; a healthy source has a
    /// period of zero. A failing shared tier does not block the attempt.
    async fn may_attempt(&self, host: &dyn Host) -> bool {
        let period = host.attempt_period();
        let now = host.now();
        self.shared
            .claim_period(host.cache_key(), ATTEMPT_SLOT, now, period)
            .await
            .unwrap_or(true)
    }

    /// Whether this instance may make the fleet's forced refresh: one per
    /// `min_refresh_interval` for the fleet. A forced refresh ignores the backoff; a failing
    /// shared tier does not block it.
    async fn may_force(&self, host: &dyn Host) -> bool {
        let (key, now) = (host.cache_key(), host.now());
        let period = host.policy().min_refresh_interval;
        let forced = self
            .shared
            .claim_period(key, FORCED_REFRESH_SLOT, now, period)
            .await
            .unwrap_or(true);
        if forced {
            // The set fetched now answers unknown kids as well as a refetch for them would:
            // it counts as the fleet's unknown-kid refetch for this cooldown.
            let _ = self
                .shared
                .claim_period(key, KID_REFETCH_SLOT, now, Duration::ZERO)
                .await;
        }
        forced
    }

    /// After a refetch for an unknown kid, marks the kid absent for the whole fleet if the new
    /// set lacks it. One mark per refetch: the kids of callers that merely joined stay local.
    async fn mark_if_absent(
        &self,
        host: &dyn Host,
        reason: &Reason,
        outcome: LoadResult,
    ) -> LoadResult {
        if let (Reason::Kid(query), Ok(entry)) = (reason, &outcome)
            && let Some(slot) = query.absent_from(&entry.value)
        {
            let marked = self
                .shared
                .claim_period(
                    host.cache_key(),
                    &slot,
                    host.now(),
                    host.policy().negative_ttl,
                )
                .await;
            if let Err(error) = marked {
                tracing::debug!(%error, "could not share an absent kid");
            }
        }
        outcome
    }

    async fn fetch_as_holder(
        &self,
        host: &dyn Host,
        current: Option<KeyEntry>,
        reason: &Reason,
    ) -> LoadResult {
        let key = host.cache_key();
        let outcome = host.fetch(current, reason).await;
        let published = match &outcome {
            Ok(entry) => {
                let invalidation = Invalidation::new(key, unix_millis(entry.fetched_at));
                let about = about_now(&self.about, host.now());
                announce(&*self.shared, key, &about).await;
                self.shared.publish(invalidation).await
            }
            Err(_) => self
                .shared
                .claim_period(key, FETCH_FAILED_SLOT, host.now(), Duration::ZERO)
                .await
                .map(drop),
        };
        if let Err(error) = published {
            tracing::debug!(%error, "could not tell the fleet");
        }
        outcome
    }

    /// Whether this instance may refetch for a kid: not if an unknown kid was already found
    /// absent from this set by the fleet (and the token does not claim to be newer than that
    /// finding), nor if another instance refetched within the cooldown. What the fleet knew is
    /// passed to the store: the absent kid, and when the fleet's cooldown ends.
    async fn may_refetch_for_kid(&self, host: &dyn Host, query: &KidQuery) -> bool {
        let key = host.cache_key();
        let now = host.now();
        if let Some(slot) = query.absent_slot()
            && let Ok(Some(marked)) = self.shared.last_claimed(key, slot).await
            && now < marked + host.policy().negative_ttl
            && !query.issued_after(marked)
        {
            host.remember_absent(slot, marked);
            return false;
        }
        let cooldown = host.policy().unknown_kid_cooldown;
        // A failing shared tier does not block the refetch: the local cooldown still holds.
        let claimed = self
            .shared
            .claim_period(key, KID_REFETCH_SLOT, now, cooldown)
            .await;
        if claimed.as_ref().is_ok_and(|claimed| !claimed) {
            match self.last_kid_refetch(host).await {
                Some((claimed_at, true)) => host.kid_refetch_claimed_at(claimed_at),
                // Claimed within the cooldown, but no set fetched since then is in the shared
                // tier: its claimer died or hung with the lease (which is ours now). Refetch
                // and claim afresh, or one dead instance would keep a rotated kid out for the
                // whole cooldown.
                Some((_, false)) => {
                    tracing::warn!(
                        source = host.source_id(),
                        instance = host.instance(),
                        "the fleet's unknown-kid refetch never delivered; fetching again"
                    );
                    let _ = self
                        .shared
                        .claim_period(key, KID_REFETCH_SLOT, now, Duration::ZERO)
                        .await;
                    return true;
                }
                // The tier cannot tell: the local cooldown still bounds refetches.
                None => {}
            }
            return false;
        }
        claimed.unwrap_or(true)
    }

    /// When the fleet's last unknown-kid refetch was claimed, and whether it delivered: a set
    /// fetched at or after the claim is in the shared tier. `None` when the tier cannot tell.
    async fn last_kid_refetch(&self, host: &dyn Host) -> Option<(SystemTime, bool)> {
        let key = host.cache_key();
        let claimed_at = self
            .shared
            .last_claimed(key, KID_REFETCH_SLOT)
            .await
            .ok()
            .flatten()?;
        match self.shared.get(key).await {
            Ok(Some(entry)) => Some((claimed_at, entry.fetched_at >= claimed_at)),
            Ok(None) => Some((claimed_at, false)),
            Err(_) => None,
        }
    }

    /// Waits for the lease holder: until it delivers a newer set, reports a failure, or lets
    /// the lease go (released, or expired with a dead holder) so that this instance takes it.
    async fn wait_for_holder(
        &self,
        host: &dyn Host,
        current: &mut Option<KeyEntry>,
        wanted: &Wanted<'_>,
    ) -> Waited {
        let key = host.cache_key();
        let arrivals = self
            .listener
            .get_or_init(|| Listener::of(&self.shared))
            .arrivals(key);
        let started = host.now();
        // A live holder renews its lease for at most its fetch timeout; a dead one lets it end
        // within a TTL. Held longer than both, the tier is not answering.
        let deadline = Instant::now() + host.policy().fetch_timeout + 2 * self.lease_ttl;
        loop {
            // Armed before the checks, so that a message between them and the pause counts.
            let arrival = arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            if let Some(entry) = host.newer_in_shared(current.as_ref()).await {
                if wanted.answered_by(&entry) {
                    return Waited::Delivered(entry);
                }
                // Newer, but older than the question: wait for a set fetched since.
                *current = Some(entry);
            }
            if let Ok(Some(failed)) = self.shared.last_claimed(key, FETCH_FAILED_SLOT).await
                && failed >= started
            {
                return Waited::Failed;
            }
            if let Ok(Some(token)) = self.shared.acquire(key, self.lease_ttl).await {
                return Waited::Acquired(token);
            }
            let now = Instant::now();
            if now >= deadline {
                return Waited::TimedOut;
            }
            let pause = POLL_INTERVAL.min(deadline - now);
            // Woken early by a message of this key; otherwise poll.
            let _ = tokio::time::timeout(pause, arrival).await;
        }
    }
}

/// What a load waits for: a set newer than the one held; for a kid, one that has the kid or was
/// fetched after the load started (a set another instance fetched before the question says
/// nothing of a kid that may have been published since).
struct Wanted<'a> {
    reason: &'a Reason,
    since: SystemTime,
}

impl Wanted<'_> {
    fn answered_by(&self, entry: &KeyEntry) -> bool {
        match self.reason {
            Reason::Kid(query) => query.answered_by(&entry.value) || entry.fetched_at >= self.since,
            _ => true,
        }
    }
}

/// How waiting for a lease holder ended.
enum Waited {
    /// The holder delivered a newer set.
    Delivered(KeyEntry),
    /// The holder's fetch failed.
    Failed,
    /// The lease was free again and is now ours.
    Acquired(LeaseToken),
    /// Neither happened within the fetch timeout and twice the lease TTL.
    TimedOut,
}

/// The directory document of an entry, with when it was announced.
fn about_now(
    about: &serde_json::Map<String, serde_json::Value>,
    now: std::time::SystemTime,
) -> String {
    let mut about = about.clone();
    about.insert("announced_at".into(), unix_millis(now).into());
    serde_json::Value::Object(about).to_string()
}

/// Records what the store's entry holds in the tier's directory, for `jwkstash refresh`.
async fn announce(shared: &dyn SharedTier<Arc<KeySet>>, key: &str, about: &str) {
    if let Err(error) = shared.announce(key, about).await {
        tracing::debug!(%error, "could not announce the entry in the shared tier");
    }
}
