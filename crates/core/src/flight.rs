use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

/// Why a single-flight load produced no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlightError {
    /// The load panicked.
    #[error("the shared load panicked")]
    Panicked,
    /// The load's task was cancelled (its runtime shut down).
    #[error("the shared load was cancelled")]
    Cancelled,
}

type SharedLoad<T> = Shared<BoxFuture<'static, Result<T, FlightError>>>;

struct Flight<T> {
    id: u64,
    load: SharedLoad<T>,
}

type FlightMap<K, T> = Arc<Mutex<HashMap<K, Flight<T>>>>;

/// Coalesces concurrent loads of the same key into one.
///
/// # Concurrent calls on the same key
///
/// While a load for a key is running, every further [`run`](Self::run) or
/// [`start`](Self::start) for that key joins it instead of starting another; they all receive a
/// clone of its output. Once it finishes, the next call starts a new load. To share errors,
/// make `T` a `Result<_, Arc<E>>`.
///
/// The load runs on its own tokio task, so it needs a tokio runtime. A caller that is cancelled
/// (its future dropped) does not cancel the load; the others still receive the output, and the
/// result is not lost for the work the load does itself (such as writing a cache).
///
/// # Panics
///
/// Nothing here panics. If a load panics, every caller waiting on it receives
/// [`FlightError::Panicked`], and the next call starts afresh.
pub struct SingleFlight<K, T> {
    flights: FlightMap<K, T>,
    next_id: AtomicU64,
}

impl<K, T> std::fmt::Debug for SingleFlight<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("SingleFlight")
            .field("running", &running)
            .finish()
    }
}

impl<K, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        Self {
            flights: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<K, T> SingleFlight<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// An empty set of flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `load` for `key`, or joins the load already running, and waits for its output.
    pub async fn run<F, Fut>(&self, key: K, load: F) -> Result<T, FlightError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.join_or_start(key, load).0.await
    }

    /// Starts `load` for `key` in the background unless one is running; does not wait.
    /// Returns whether a new load was started.
    pub fn start<F, Fut>(&self, key: K, load: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.join_or_start(key, load).1
    }

    /// Joins the load running for `key`; if none is running, starts `load` only when
    /// `start_if` (called under the same lock, so atomically with the check) says so.
    /// Returns `None` when nothing ran.
    pub async fn run_if<F, Fut>(
        &self,
        key: K,
        start_if: impl FnOnce() -> bool,
        load: F,
    ) -> Option<Result<T, FlightError>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let shared = {
            let mut flights = self.lock();
            match flights.get(&key) {
                Some(flight) => flight.load.clone(),
                None if start_if() => self.start_locked(&mut flights, key, load),
                None => return None,
            }
        };
        Some(shared.await)
    }

    /// Whether a load for `key` is running.
    pub fn is_running(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    /// How many callers of [`run`](Self::run) or [`run_if`](Self::run_if) are waiting now for
    /// the load running for `key`, the one that started it included (0 when none runs; a
    /// [`start`](Self::start) does not wait). Tests use it to hold a load open until the
    /// callers they expect have joined it.
    pub fn waiting(&self, key: &K) -> usize {
        self.lock()
            .get(key)
            .and_then(|flight| flight.load.strong_count())
            // One handle stays in the map for as long as the flight runs.
            .map_or(0, |handles| handles.saturating_sub(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Flight<T>>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join_or_start<F, Fut>(&self, key: K, load: F) -> (SharedLoad<T>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(&key) {
            return (flight.load.clone(), false);
        }
        (self.start_locked(&mut flights, key, load), true)
    }

    fn start_locked<F, Fut>(
        &self,
        flights: &mut HashMap<K, Flight<T>>,
        key: K,
        load: F,
    ) -> SharedLoad<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let landing = Landing {
            flights: Arc::clone(&self.flights),
            key: Some(key.clone()),
            id,
        };
        let future = load();
        let task = tokio::spawn(async move {
            // Dropped when the load ends, panics or is cancelled: the flight is then over.
            let _landing = landing;
            future.await
        });
        let shared = async move {
            task.await.map_err(|error| {
                if error.is_panic() {
                    FlightError::Panicked
                } else {
                    FlightError::Cancelled
                }
            })
        }
        .boxed()
        .shared();
        flights.insert(
            key,
            Flight {
                id,
                load: shared.clone(),
            },
        );
        shared
    }
}

/// Removes a finished flight from the map, whichever way its task ended.
struct Landing<K: Hash + Eq, T> {
    flights: FlightMap<K, T>,
    key: Option<K>,
    id: u64,
}

impl<K: Hash + Eq, T> Drop for Landing<K, T> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&key).is_some_and(|flight| flight.id == self.id) {
            flights.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Waits (yielding) until `callers` wait on the flight of `key`; at most 10 s.
    async fn joined<K, T>(flights: &SingleFlight<K, T>, key: &K, callers: usize)
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
    {
        let all_in = async {
            while flights.waiting(key) < callers {
                tokio::task::yield_now().await;
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(10), all_in)
                .await
                .is_ok(),
            "{} of {callers} callers joined",
            flights.waiting(key)
        );
    }

    /// The load is held open by a gate until all 100 callers are seen waiting on it: they
    /// joined the one load while it ran, whatever the scheduling, with no timing involved.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_runs_share_one_load() {
        let flights = Arc::new(SingleFlight::<&'static str, u32>::new());
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let flights = Arc::clone(&flights);
            let (loads, gate) = (Arc::clone(&loads), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        let _open = gate.acquire().await;
                        7
                    })
                    .await
            }));
        }
        joined(&flights, &"k", 100).await;
        assert!(flights.is_running(&"k"));
        assert!(loads.load(Ordering::SeqCst) <= 1);
        gate.add_permits(1);
        for task in tasks {
            assert_eq!(task.await.ok(), Some(Ok(7)));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(!flights.is_running(&"k"));
        assert_eq!(flights.waiting(&"k"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_leader_does_not_strand_waiters() {
        let flights = Arc::new(SingleFlight::<u8, u32>::new());
        let leader = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run(1, || async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        42
                    })
                    .await
            })
        };
        joined(&flights, &1, 1).await;
        let waiter = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move { flights.run(1, || async { 0 }).await })
        };
        // The waiter joined the leader's load before the leader goes.
        joined(&flights, &1, 2).await;
        leader.abort();
        assert_eq!(waiter.await.ok(), Some(Ok(42)));
    }

    #[tokio::test]
    async fn a_panicking_load_reaches_every_waiter_and_clears() {
        let flights = SingleFlight::<u8, u32>::new();
        let outcome = flights
            .run(1, || async {
                if flights_panic() {
                    panic!("load failed");
                }
                1
            })
            .await;
        assert_eq!(outcome, Err(FlightError::Panicked));
        assert!(!flights.is_running(&1));
        assert_eq!(flights.run(1, || async { 2 }).await, Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn run_if_joins_or_asks() {
        let flights = Arc::new(SingleFlight::<u8, u32>::new());
        assert_eq!(flights.run_if(1, || false, || async { 1 }).await, None);
        assert_eq!(
            flights.run_if(1, || true, || async { 2 }).await,
            Some(Ok(2))
        );
        let running = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run(1, || async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        3
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        // A running load is joined even when a new one would not be started.
        assert_eq!(
            flights.run_if(1, || false, || async { 4 }).await,
            Some(Ok(3))
        );
        assert_eq!(running.await.ok(), Some(Ok(3)));
    }

    fn flights_panic() -> bool {
        true
    }

    #[tokio::test(start_paused = true)]
    async fn start_runs_in_the_background_once() {
        let flights = SingleFlight::<u8, u32>::new();
        let loads = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let loads = Arc::clone(&loads);
            flights.start(9, move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                1
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(!flights.is_running(&9));
    }
}
