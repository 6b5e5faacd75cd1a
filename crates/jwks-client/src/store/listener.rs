//! One invalidation listener per shared tier, however many verifiers read it.
//!
//! Every message on the tier's channel is routed by entry key to the stores that hold that
//! entry: a process with 10,000 issuers on one Redis wakes one verifier per message, not
//! 10,000. A stretch of lost messages (the channel lagged) re-reads the entries this process
//! holds, each once. Instances waiting for a lease holder are woken by the messages of their
//! key alone. A refresh request (`jwkstash refresh`) makes the stores of its key refresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use jwkstash_core::Invalidation;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::store::load::{Follower, Listening};
use crate::store::tiers::SharedKeySetTier;

/// The shortest time between two shared-tier reads of one store caused by messages.
const INVALIDATION_SPACING: Duration = Duration::from_millis(5);
/// `pending` when every held entry must be read again, whatever its version.
const READ_ANYWAY: u64 = u64::MAX;

/// This process's listeners, by the address of their shared tier: one per tier while a store
/// uses it (the listener keeps the tier, so the address is not reused meanwhile).
static LISTENERS: LazyLock<Mutex<HashMap<usize, Weak<Listener>>>> = LazyLock::new(Mutex::default);

/// The one listener of a shared tier in this process.
pub(crate) struct Listener {
    routes: Mutex<HashMap<String, Route>>,
    task: tokio::task::JoinHandle<()>,
    _tier: SharedKeySetTier,
}

/// Who hears the messages of one entry key.
#[derive(Default)]
struct Route {
    members: Vec<Arc<Member>>,
    /// Woken at every message of the key: instances waiting for a lease holder.
    arrivals: Arc<Notify>,
}

/// One store's place on a route.
struct Member {
    store: Weak<dyn Follower>,
    /// The newest version heard and not yet read (0: none; [`READ_ANYWAY`]).
    pending: AtomicU64,
    /// Set while a task reads the shared tier for this store.
    reading: AtomicBool,
}

/// A store's place on its route, given up when dropped (with the store).
pub(crate) struct Registration {
    listener: Arc<Listener>,
    key: String,
    member: Arc<Member>,
}

impl Listener {
    /// The listener of `tier` in this process, started on first use (needs a tokio runtime).
    pub(crate) fn of(tier: &SharedKeySetTier) -> Arc<Self> {
        let address = Arc::as_ptr(tier).cast::<()>().addr();
        let mut listeners = LISTENERS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listener) = listeners.get(&address).and_then(Weak::upgrade) {
            return listener;
        }
        listeners.retain(|_, listener| listener.strong_count() > 0);
        let invalidations = tier.subscribe();
        let listener = Arc::new_cyclic(|listener: &Weak<Self>| Self {
            routes: Mutex::default(),
            task: tokio::spawn(listen(listener.clone(), invalidations)),
            _tier: Arc::clone(tier),
        });
        listeners.insert(address, Arc::downgrade(&listener));
        listener
    }

    /// Routes the messages of `key` to `store` until the registration is dropped.
    pub(crate) fn register(self: &Arc<Self>, key: &str, store: Weak<dyn Follower>) -> Registration {
        let member = Arc::new(Member {
            store,
            pending: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        });
        self.routes()
            .entry(key.to_owned())
            .or_default()
            .members
            .push(Arc::clone(&member));
        Registration {
            listener: Arc::clone(self),
            key: key.to_owned(),
            member,
        }
    }

    /// What wakes an instance waiting for news of `key`.
    pub(crate) fn arrivals(&self, key: &str) -> Arc<Notify> {
        Arc::clone(&self.routes().entry(key.to_owned()).or_default().arrivals)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a message to the stores of its key, and wakes the instances waiting for it.
    fn deliver(&self, invalidation: &Invalidation) {
        let members = {
            let routes = self.routes();
            let Some(route) = routes.get(&invalidation.key) else {
                return;
            };
            route.arrivals.notify_waiters();
            route.members.clone()
        };
        for member in members {
            if invalidation.is_refresh_request() {
                member.refresh();
            } else {
                member.heard(invalidation.version);
            }
        }
    }

    /// After lost messages: every entry held here is read again, once.
    fn deliver_to_all(&self) {
        let members: Vec<Arc<Member>> = {
            let routes = self.routes();
            routes
                .values()
                .flat_map(|route| {
                    route.arrivals.notify_waiters();
                    route.members.iter().cloned()
                })
                .collect()
        };
        for member in members {
            member.heard(READ_ANYWAY);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut routes = self.listener.routes();
        if let Some(route) = routes.get_mut(&self.key) {
            route
                .members
                .retain(|member| !Arc::ptr_eq(member, &self.member));
            if route.members.is_empty() {
                routes.remove(&self.key);
            }
        }
    }
}

/// Receives the tier's messages for as long as the listener lives.
async fn listen(
    listener: Weak<Listener>,
    mut invalidations: tokio::sync::broadcast::Receiver<Invalidation>,
) {
    loop {
        let heard = invalidations.recv().await;
        let Some(listener) = listener.upgrade() else {
            return;
        };
        match heard {
            Ok(invalidation) => listener.deliver(&invalidation),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "invalidations lost; reading the held entries again");
                listener.deliver_to_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl Member {
    /// Notes `version` and reads the shared tier for the store, unless a read is running (it
    /// will see the note): a burst, or a flood from whoever can publish, costs one read per
    /// [`INVALIDATION_SPACING`].
    fn heard(self: &Arc<Self>, version: u64) {
        self.pending.fetch_max(version, Ordering::AcqRel);
        if self.reading.swap(true, Ordering::AcqRel) {
            return;
        }
        let member = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let version = member.pending.swap(0, Ordering::AcqRel);
                let Some(store) = member.store.upgrade() else {
                    return;
                };
                store.catch_up(version).await;
                drop(store);
                tokio::time::sleep(INVALIDATION_SPACING).await;
                member.reading.store(false, Ordering::Release);
                if member.pending.load(Ordering::Acquire) == 0
                    || member.reading.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// A refresh request: the store refreshes as [`Verifier::refresh`](crate::Verifier::refresh)
    /// does (one fetch per `min_refresh_interval` for the whole fleet, whoever asks).
    fn refresh(&self) {
        let Some(store) = self.store.upgrade() else {
            return;
        };
        tokio::spawn(store.refresh_requested());
    }
}

impl Listening for Registration {}
