//! [`KeyEvent`]s: what happened to a verifier's keys, for alerts and dashboards. Sent on a
//! bounded tokio broadcast channel: a verification never waits for a subscriber, and a
//! subscriber that falls behind loses the oldest events (`RecvError::Lagged`), not memory;
//! [`KeyEvents`] goes on after such a gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use jwkstash_core::unix_millis;
use tokio::sync::broadcast;

use crate::jose::keyset::KeySet;
use crate::store::error::RefreshError;

/// How many events a subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 64;

/// Something that happened to a verifier's keys. Subscribe with
/// [`Verifier::subscribe`](crate::Verifier::subscribe).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeyEvent {
    /// The set verified with changed (or was loaded for the first time): the kids it added and
    /// removed, sorted. Keys without a kid are not listed; a change of key material under a
    /// kept kid lists the kid in both.
    KeySetChanged {
        /// Kids in the new set that the previous one lacked (or whose key changed).
        added: Vec<String>,
        /// Kids of the previous set that the new one lacks (or whose key changed).
        removed: Vec<String>,
        /// The new set's [`fingerprint`](KeySet::fingerprint).
        fingerprint: u64,
    },
    /// A refresh failed; the next attempt is in `retry_after`.
    RefreshFailed {
        /// Why.
        cause: Arc<RefreshError>,
        /// The backoff before the next attempt.
        retry_after: Duration,
    },
    /// A set past its freshness was served: sent once per stale period (per set), the first
    /// time a verification uses it.
    StaleServed {
        /// When the set stopped being fresh.
        since: SystemTime,
        /// When it stops being usable (`max_stale` later).
        until: SystemTime,
    },
    /// This instance took the fleet's fetch lease (it fetches for the fleet).
    LeaseTaken,
    /// This instance lost the fleet's lease while fetching: its renewals did not reach the
    /// shared tier within the lease TTL (a frozen process, a sick tier), so another instance
    /// may have fetched too.
    LeaseLost {
        /// The lease TTL that a renewal failed to meet.
        lease_ttl: Duration,
    },
}

/// A subscription to a verifier's [`KeyEvent`]s that goes on after falling behind.
///
/// The channel is bounded ([`EVENT_CAPACITY`]): a subscriber that falls behind loses the
/// oldest events, and a bare [`Receiver`](broadcast::Receiver) then answers
/// `Err(RecvError::Lagged(n))` once before the events it still holds, so a
/// `while let Ok(event) = receiver.recv().await` loop stops for good at the first lag.
/// [`next`](Self::next) skips the gap instead, and counts it in [`lost`](Self::lost).
///
/// ```no_run
/// fn alert_on_failures(verifier: &jwkstash_jwks::Verifier) {
///     let mut events = jwkstash_jwks::KeyEvents::from(verifier.subscribe());
///     tokio::spawn(async move {
///         while let Some(event) = events.next().await {
///             if let jwkstash_jwks::KeyEvent::RefreshFailed { cause, .. } = event {
///                 eprintln!("JWKS refresh failed: {cause}");
///             }
///         }
///     });
/// }
/// ```
#[derive(Debug)]
pub struct KeyEvents {
    receiver: broadcast::Receiver<KeyEvent>,
    lost: u64,
}

impl KeyEvents {
    /// The next event, waiting for one. Events lost because this subscriber fell behind are
    /// skipped (and counted in [`lost`](Self::lost)); `None` only once the verifier is gone
    /// (it and every clone of it dropped).
    pub async fn next(&mut self) -> Option<KeyEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    self.lost = self.lost.saturating_add(lost);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// How many events this subscriber lost by falling behind, so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The receiver underneath.
    pub fn into_inner(self) -> broadcast::Receiver<KeyEvent> {
        self.receiver
    }
}

impl From<broadcast::Receiver<KeyEvent>> for KeyEvents {
    /// Wraps a receiver of [`Verifier::subscribe`](crate::Verifier::subscribe).
    fn from(receiver: broadcast::Receiver<KeyEvent>) -> Self {
        Self { receiver, lost: 0 }
    }
}

/// The sending side, held by the key store. The channel is made at the first subscription:
/// most verifiers never have one, and its slots cost memory up front.
#[derive(Debug)]
pub(crate) struct Events {
    sender: std::sync::OnceLock<broadcast::Sender<KeyEvent>>,
    /// The `fresh_until` (ms) of the last set reported as served stale.
    stale_reported: AtomicU64,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            sender: std::sync::OnceLock::new(),
            stale_reported: AtomicU64::new(0),
        }
    }
}

impl Events {
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<KeyEvent> {
        self.sender
            .get_or_init(|| broadcast::Sender::new(EVENT_CAPACITY))
            .subscribe()
    }

    /// Sends `event` to the current subscribers, if any; never waits.
    pub(crate) fn send(&self, event: impl FnOnce() -> KeyEvent) {
        if let Some(sender) = self.sender.get()
            && sender.receiver_count() > 0
        {
            // An error only says that every subscriber has gone since the check.
            let _ = sender.send(event());
        }
    }

    /// Reports a set served stale, once per set.
    pub(crate) fn served_stale(&self, since: SystemTime, until: SystemTime) {
        let period = unix_millis(since);
        if self.stale_reported.swap(period, Ordering::AcqRel) != period {
            self.send(|| KeyEvent::StaleServed { since, until });
        }
    }

    /// Reports `new` replacing `old` (`None`: the first set).
    pub(crate) fn changed(&self, old: Option<&KeySet>, new: &KeySet) {
        if old.is_some_and(|old| old.fingerprint() == new.fingerprint()) {
            return;
        }
        self.send(|| {
            let kids = |set: Option<&KeySet>| -> Vec<(String, u64)> {
                let mut kids: Vec<(String, u64)> = set
                    .map(KeySet::keys)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|key| Some((key.kid()?.to_owned(), key.thumbprint())))
                    .collect();
                kids.sort_unstable();
                kids
            };
            let (before, after) = (kids(old), kids(Some(new)));
            let only_in = |these: &[(String, u64)], others: &[(String, u64)]| {
                let mut kids: Vec<String> = these
                    .iter()
                    .filter(|kid| others.binary_search(kid).is_err())
                    .map(|(kid, _)| kid.clone())
                    .collect();
                kids.dedup();
                kids
            };
            KeyEvent::KeySetChanged {
                added: only_in(&after, &before),
                removed: only_in(&before, &after),
                fingerprint: new.fingerprint(),
            }
        });
    }
}
