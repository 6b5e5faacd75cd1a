//! [`Tiered`]: the one place that reads the near tier, then the shared tier, then the snapshot
//! tier, and fills the nearer tiers with what an outer one had.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{Cache, CacheError, Entry};

/// At most one warning per this period about a failing shared tier (the others log at debug).
const SHARED_WARNING_PERIOD: Duration = Duration::from_secs(10);

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// The near tier (in-process).
    Near,
    /// The shared tier (such as Redis); its entry was copied to the near tier.
    Shared,
    /// The snapshot tier (such as a directory): the last set this process or its fleet knew,
    /// kept across restarts; its entry was copied to the near tier.
    Snapshot,
}

/// A near tier (in-process, read first) over an optional shared tier (such as Redis) over an
/// optional snapshot tier (such as a directory that outlives the process), as one [`Cache`].
///
/// * Reads try the near tier, then the shared tier, then the snapshot tier; an entry of an
///   outer tier passes the caller's admission check (see [`read`](Self::read)) and is copied
///   to the near tier. An entry of the shared tier is also copied to the snapshot tier, so
///   that the snapshot follows what the fleet fetched.
/// * `put` and `remove` go to every tier: the shared and snapshot tiers at once (a caller
///   waits for the slower of the two, not their sum), then the near tier.
/// * **Error policy**: an error of the shared or snapshot tier never fails a call. It is read
///   as a miss, counted ([`shared_failures`](Self::shared_failures),
///   [`snapshot_failures`](Self::snapshot_failures)), and logged as a warning at most once
///   per 10 s (at debug otherwise). Near-tier errors are returned.
///
/// `Tiered` is itself a `Cache`, so tiers stack.
#[derive(Debug)]
pub struct Tiered<N, S, P = S> {
    near: N,
    shared: Option<S>,
    snapshot: Option<P>,
    shared_failures: AtomicU64,
    snapshot_failures: AtomicU64,
    /// When the last warning about the shared tier was logged (ms since `born`; 0: never).
    warned_ms: AtomicU64,
    born: Instant,
}

impl<N, S> Tiered<N, S> {
    /// Stacks `near` over `shared`.
    pub fn new(near: N, shared: S) -> Self {
        Self::with(near, Some(shared))
    }

    /// The near tier alone (no shared tier): reads and writes go to `near` only.
    pub fn alone(near: N) -> Self {
        Self::with(near, None)
    }

    fn with(near: N, shared: Option<S>) -> Self {
        Self {
            near,
            shared,
            snapshot: None,
            shared_failures: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

impl<N, S, P> Tiered<N, S, P> {
    /// The same stack over a snapshot tier (or none, given `None`), read last when the near
    /// and shared tiers miss: a store that outlives the process, for a start while the
    /// provider is down.
    pub fn with_snapshot<Q>(self, snapshot: impl Into<Option<Q>>) -> Tiered<N, S, Q> {
        Tiered {
            near: self.near,
            shared: self.shared,
            snapshot: snapshot.into(),
            shared_failures: self.shared_failures,
            snapshot_failures: self.snapshot_failures,
            warned_ms: self.warned_ms,
            born: self.born,
        }
    }

    /// The near tier.
    pub fn near(&self) -> &N {
        &self.near
    }

    /// The shared tier, if there is one.
    pub fn shared(&self) -> Option<&S> {
        self.shared.as_ref()
    }

    /// The snapshot tier, if there is one.
    pub fn snapshot(&self) -> Option<&P> {
        self.snapshot.as_ref()
    }

    /// How many shared-tier calls failed (each read as a miss or skipped).
    pub fn shared_failures(&self) -> u64 {
        self.shared_failures.load(Ordering::Relaxed)
    }

    /// How many snapshot-tier calls failed (each read as a miss or skipped).
    pub fn snapshot_failures(&self) -> u64 {
        self.snapshot_failures.load(Ordering::Relaxed)
    }

    /// Counts an outer tier's failure and logs it, as a warning at most once per period.
    fn outer_failed(&self, tier: Tier, error: &CacheError, what: &'static str, name: &str) {
        let failures = match tier {
            Tier::Snapshot => &self.snapshot_failures,
            _ => &self.shared_failures,
        };
        failures.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.warned_ms.load(Ordering::Relaxed);
        let period = SHARED_WARNING_PERIOD.as_millis() as u64;
        let due = last == 0 || now.saturating_sub(last) >= period;
        if due
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, tier = name, what, "cache tier failed; read as a miss");
        } else {
            tracing::debug!(%error, tier = name, what, "cache tier failed; read as a miss");
        }
    }
}

impl<N, S, P> Tiered<N, S, P> {
    /// Reads `key`: the near tier, else the shared tier, else the snapshot tier. An outer
    /// tier's entry is kept only if `admit` returns it (possibly changed: a reader may clamp
    /// what another instance, or an earlier process, wrote) and is then copied to the near
    /// tier. Says which tier answered.
    pub async fn read<V>(
        &self,
        key: &str,
        admit: impl Fn(Entry<V>) -> Option<Entry<V>>,
    ) -> Result<Option<(Entry<V>, Tier)>, CacheError>
    where
        V: Clone + Send + Sync + 'static,
        N: Cache<V>,
        S: Cache<V>,
        P: Cache<V>,
    {
        if let Some(entry) = self.near.get(key).await? {
            return Ok(Some((entry, Tier::Near)));
        }
        if let Some(entry) = self.read_shared(key, &admit).await {
            return Ok(Some((entry, Tier::Shared)));
        }
        let Some(entry) = self.read_outer(Tier::Snapshot, key, &admit).await else {
            return Ok(None);
        };
        self.fill(key, &entry).await;
        Ok(Some((entry, Tier::Snapshot)))
    }

    /// Reads `key` from the shared tier only (a newer entry announced by another instance),
    /// admitted and copied to the near and snapshot tiers. `None` without a shared tier, on a
    /// miss, on a failure, or when `admit` refuses the entry.
    pub async fn read_shared<V>(
        &self,
        key: &str,
        admit: impl Fn(Entry<V>) -> Option<Entry<V>>,
    ) -> Option<Entry<V>>
    where
        V: Clone + Send + Sync + 'static,
        N: Cache<V>,
        S: Cache<V>,
        P: Cache<V>,
    {
        let entry = self.read_outer(Tier::Shared, key, admit).await?;
        if let Some(snapshot) = &self.snapshot
            && let Err(error) = snapshot.put(key, entry.clone()).await
        {
            self.outer_failed(Tier::Snapshot, &error, "write", snapshot.name());
        }
        self.fill(key, &entry).await;
        Some(entry)
    }

    /// Reads `key` from the shared or the snapshot tier, admitted; failures read as misses.
    async fn read_outer<V>(
        &self,
        tier: Tier,
        key: &str,
        admit: impl Fn(Entry<V>) -> Option<Entry<V>>,
    ) -> Option<Entry<V>>
    where
        V: Clone + Send + Sync + 'static,
        S: Cache<V>,
        P: Cache<V>,
    {
        let read = match tier {
            Tier::Snapshot => {
                let snapshot = self.snapshot.as_ref()?;
                (snapshot.get(key).await, snapshot.name())
            }
            _ => {
                let shared = self.shared.as_ref()?;
                (shared.get(key).await, shared.name())
            }
        };
        match read {
            (Ok(entry), _) => admit(entry?),
            (Err(error), name) => {
                self.outer_failed(tier, &error, "read", name);
                None
            }
        }
    }

    /// Copies an outer tier's entry to the near tier (a failure is logged: the entry is still
    /// served).
    async fn fill<V>(&self, key: &str, entry: &Entry<V>)
    where
        V: Clone + Send + 'static,
        N: Cache<V>,
    {
        if let Err(error) = self.near.put(key, entry.clone()).await {
            tracing::warn!(%error, tier = self.near.name(), "near tier write failed");
        }
    }
}

#[async_trait]
impl<V, N, S, P> Cache<V> for Tiered<N, S, P>
where
    V: Clone + Send + Sync + 'static,
    N: Cache<V>,
    S: Cache<V>,
    P: Cache<V>,
{
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        Ok(self.read(key, Some).await?.map(|(entry, _)| entry))
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        // The shared and snapshot writes run together: a caller waits for the slower one,
        // not for both in turn.
        let shared = async {
            if let Some(shared) = &self.shared
                && let Err(error) = shared.put(key, entry.clone()).await
            {
                self.outer_failed(Tier::Shared, &error, "write", shared.name());
            }
        };
        let snapshot = async {
            if let Some(snapshot) = &self.snapshot
                && let Err(error) = snapshot.put(key, entry.clone()).await
            {
                self.outer_failed(Tier::Snapshot, &error, "write", snapshot.name());
            }
        };
        futures_util::future::join(shared, snapshot).await;
        self.near.put(key, entry).await
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        let shared = async {
            if let Some(shared) = &self.shared
                && let Err(error) = shared.remove(key).await
            {
                self.outer_failed(Tier::Shared, &error, "remove", shared.name());
            }
        };
        let snapshot = async {
            if let Some(snapshot) = &self.snapshot
                && let Err(error) = snapshot.remove(key).await
            {
                self.outer_failed(Tier::Snapshot, &error, "remove", snapshot.name());
            }
        };
        futures_util::future::join(shared, snapshot).await;
        self.near.remove(key).await
    }

    fn name(&self) -> &'static str {
        "tiered"
    }
}
