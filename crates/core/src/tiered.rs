use async_trait::async_trait;

use crate::{Cache, CacheError, Entry};

/// Two tiers as one [`Cache`]: a fast near tier (`L1`, in-process) over a shared far tier
/// (`L2`, such as Redis).
///
/// * `get` reads L1; on a miss reads L2 and fills L1 with what it found.
/// * `put` and `remove` go to both tiers.
/// * L2 failures never fail a call: they are logged and read as a miss. L1 errors are returned.
///
/// `Tiered` is itself a `Cache`, so tiers stack.
#[derive(Debug, Clone)]
pub struct Tiered<L1, L2> {
    near: L1,
    far: L2,
}

impl<L1, L2> Tiered<L1, L2> {
    /// Stacks `near` over `far`.
    pub fn new(near: L1, far: L2) -> Self {
        Self { near, far }
    }

    /// The near tier.
    pub fn near(&self) -> &L1 {
        &self.near
    }

    /// The far tier.
    pub fn far(&self) -> &L2 {
        &self.far
    }
}

#[async_trait]
impl<V, L1, L2> Cache<V> for Tiered<L1, L2>
where
    V: Clone + Send + Sync + 'static,
    L1: Cache<V>,
    L2: Cache<V>,
{
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        if let Some(entry) = self.near.get(key).await? {
            return Ok(Some(entry));
        }
        let entry = match self.far.get(key).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::warn!(%error, tier = self.far.name(), "far tier read failed; treated as a miss");
                return Ok(None);
            }
        };
        self.near.put(key, entry.clone()).await?;
        Ok(Some(entry))
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        if let Err(error) = self.far.put(key, entry.clone()).await {
            tracing::warn!(%error, tier = self.far.name(), "far tier write failed");
        }
        self.near.put(key, entry).await
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        if let Err(error) = self.far.remove(key).await {
            tracing::warn!(%error, tier = self.far.name(), "far tier remove failed");
        }
        self.near.remove(key).await
    }

    fn name(&self) -> &'static str {
        "tiered"
    }
}
