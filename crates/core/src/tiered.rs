//! [`Tiered`]: the one place that reads the near tier, then the shared tier, and fills the
//! near tier with what the shared tier had.

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
}

/// A near tier (in-process, read first) over an optional shared tier (such as Redis), as one
/// [`Cache`].
///
/// * Reads try the near tier, then the shared tier; an entry of the shared tier passes the
///   caller's admission check (see [`read`](Self::read)) and is copied to the near tier.
/// * `put` and `remove` go to both tiers.
/// * **Error policy**: a shared-tier error never fails a call. It is read as a miss, counted
///   ([`shared_failures`](Self::shared_failures)), and logged as a warning at most once per
///   10 s (at debug otherwise). Near-tier errors are returned.
///
/// `Tiered` is itself a `Cache`, so tiers stack.
#[derive(Debug)]
pub struct Tiered<N, S> {
    near: N,
    shared: Option<S>,
    shared_failures: AtomicU64,
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
            shared_failures: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
            born: Instant::now(),
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

    /// How many shared-tier calls failed (each read as a miss or skipped).
    pub fn shared_failures(&self) -> u64 {
        self.shared_failures.load(Ordering::Relaxed)
    }

    /// Counts a shared-tier failure and logs it, as a warning at most once per period.
    fn shared_failed(&self, error: &CacheError, what: &'static str, tier: &'static str) {
        self.shared_failures.fetch_add(1, Ordering::Relaxed);
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
            tracing::warn!(%error, tier, what, "shared tier failed; read as a miss");
        } else {
            tracing::debug!(%error, tier, what, "shared tier failed; read as a miss");
        }
    }
}

impl<N, S> Tiered<N, S> {
    /// Reads `key`: the near tier, else the shared tier, whose entry is kept only if `admit`
    /// returns it (possibly changed: a reader may clamp what another instance wrote) and is
    /// then copied to the near tier. Says which tier answered.
    pub async fn read<V>(
        &self,
        key: &str,
        admit: impl FnOnce(Entry<V>) -> Option<Entry<V>>,
    ) -> Result<Option<(Entry<V>, Tier)>, CacheError>
    where
        V: Clone + Send + Sync + 'static,
        N: Cache<V>,
        S: Cache<V>,
    {
        if let Some(entry) = self.near.get(key).await? {
            return Ok(Some((entry, Tier::Near)));
        }
        Ok(self
            .read_shared(key, admit)
            .await
            .map(|entry| (entry, Tier::Shared)))
    }

    /// Reads `key` from the shared tier only (a newer entry announced by another instance),
    /// admitted and copied to the near tier as [`read`](Self::read) does. `None` without a
    /// shared tier, on a miss, on a failure, or when `admit` refuses the entry.
    pub async fn read_shared<V>(
        &self,
        key: &str,
        admit: impl FnOnce(Entry<V>) -> Option<Entry<V>>,
    ) -> Option<Entry<V>>
    where
        V: Clone + Send + Sync + 'static,
        N: Cache<V>,
        S: Cache<V>,
    {
        let shared = self.shared.as_ref()?;
        let entry = match shared.get(key).await {
            Ok(entry) => admit(entry?)?,
            Err(error) => {
                self.shared_failed(&error, "read", shared.name());
                return None;
            }
        };
        if let Err(error) = self.near.put(key, entry.clone()).await {
            tracing::warn!(%error, tier = self.near.name(), "near tier write failed");
        }
        Some(entry)
    }
}

#[async_trait]
impl<V, N, S> Cache<V> for Tiered<N, S>
where
    V: Clone + Send + Sync + 'static,
    N: Cache<V>,
    S: Cache<V>,
{
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        Ok(self.read(key, Some).await?.map(|(entry, _)| entry))
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        if let Some(shared) = &self.shared
            && let Err(error) = shared.put(key, entry.clone()).await
        {
            self.shared_failed(&error, "write", shared.name());
        }
        self.near.put(key, entry).await
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        if let Some(shared) = &self.shared
            && let Err(error) = shared.remove(key).await
        {
            self.shared_failed(&error, "remove", shared.name());
        }
        self.near.remove(key).await
    }

    fn name(&self) -> &'static str {
        "tiered"
    }
}
