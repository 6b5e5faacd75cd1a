use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{CacheError, Entry, FlightError, SingleFlight};

/// One cache tier: in-process memory, Redis, or a stack of tiers ([`Tiered`](crate::Tiered)).
///
/// # Contract
///
/// * `get` returns `None` for a missing key and never returns an entry at or past its
///   [`usable_until`](Entry::usable_until) according to the backend's clock. Whether the entry
///   is fresh is for the caller to decide.
/// * `put` stores the entry unless the cache holds one with a later
///   [`fetched_at`](Entry::fetched_at): a slow writer never rolls a newer value back. Entries
///   with the same `fetched_at` are replaced.
/// * `remove` of a missing key succeeds.
/// * Keys are opaque identifiers built by jwkstash (hashes of the source), never raw input.
/// * Errors are for the backend's own failures; a value that cannot be decoded reads as a miss.
///
/// The trait is object safe; the verifier holds an `Arc<dyn Cache<V>>`. Configuration belongs
/// to each backend's builder, not to this trait.
#[async_trait]
pub trait Cache<V>: Send + Sync + std::fmt::Debug {
    /// Reads an entry.
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError>;

    /// Stores an entry unless a newer one is present (see the contract above).
    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError>;

    /// Removes an entry.
    async fn remove(&self, key: &str) -> Result<(), CacheError>;

    /// A short name of the backend for logs and errors (`"memory"`, `"redis"`).
    fn name(&self) -> &'static str;
}

macro_rules! forward_cache {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<V: Send + 'static, C: Cache<V> + ?Sized> Cache<V> for $ptr<C> {
            async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
                (**self).get(key).await
            }
            async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
                (**self).put(key, entry).await
            }
            async fn remove(&self, key: &str) -> Result<(), CacheError> {
                (**self).remove(key).await
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
        }
    )*};
}

forward_cache!(Arc, Box);

/// A value that a serialising tier (such as Redis) can store as bytes.
///
/// `from_bytes` receives bytes read back from shared storage: it must treat them as untrusted
/// and fail cleanly, never panic.
pub trait CacheValue: Sized + Send + Sync + 'static {
    /// The bytes to store.
    fn to_bytes(&self) -> Vec<u8>;

    /// Rebuilds a value from stored bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// A stored value that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("stored value could not be decoded: {0}")]
pub struct DecodeError(pub String);

impl CacheValue for Vec<u8> {
    fn to_bytes(&self) -> Vec<u8> {
        self.clone()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

impl<T: CacheValue> CacheValue for Arc<T> {
    fn to_bytes(&self) -> Vec<u8> {
        (**self).to_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        T::from_bytes(bytes).map(Arc::new)
    }
}

/// Reads `key` from `cache`; on a miss runs `load` once however many callers miss together,
/// stores its entry and returns it to all of them.
///
/// # Concurrent calls on the same key
///
/// Concurrent misses on one key share one run of `load` through `flights`. The load runs on its
/// own tokio task: cancelling the caller that started it does not cancel it, and the other
/// callers still receive its result. An error of `load` is shared as `Arc<E>` and not cached.
///
/// # Panics
///
/// This function does not panic. If `load` panics, every waiting caller receives
/// [`FlightError::Panicked`] and the next call starts a new load.
pub async fn get_or_load<V, E, F, Fut>(
    cache: &Arc<dyn Cache<V>>,
    flights: &SingleFlight<String, Result<Entry<V>, Arc<E>>>,
    key: &str,
    load: F,
) -> Result<Result<Entry<V>, Arc<E>>, FlightError>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Entry<V>, E>> + Send + 'static,
{
    if let Ok(Some(entry)) = cache.get(key).await {
        return Ok(Ok(entry));
    }
    let store = Arc::clone(cache);
    let owned_key = key.to_owned();
    let fut = load();
    flights
        .run(key.to_owned(), move || async move {
            let entry = fut.await.map_err(Arc::new)?;
            if let Err(error) = store.put(&owned_key, entry.clone()).await {
                tracing::warn!(%error, "could not store a loaded entry");
            }
            Ok(entry)
        })
        .await
}
