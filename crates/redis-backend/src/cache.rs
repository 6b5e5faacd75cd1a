//! [`RedisCache`]: the [`Cache`] implementation over fred.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, KeysInterface};
use fred::types::Value;
use jwkstash_core::envelope::{self, Refusals, Refused, Secret};
use jwkstash_core::{
    Cache, CacheError, CacheErrorKind, CacheValue, Entry, Invalidation, SharedClock, unix_millis,
};
use tokio::sync::broadcast;

use crate::client::{BACKEND, RedisClient};
use crate::scripts;

/// A shared cache tier in Redis. Cloning is cheap; clones share the connection.
#[derive(Clone)]
pub struct RedisCache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: RedisClient,
    pub(crate) subscriber: SubscriberClient,
    /// The secret values are sealed with, then those still accepted (being rotated out); empty
    /// only when the caller opted out of authentication by name.
    secrets: Vec<Secret>,
    max_value_bytes: usize,
    pub(crate) clock_skew: Duration,
    pub(crate) clock: SharedClock,
    pub(crate) invalidations: broadcast::Sender<Invalidation>,
    refusals: Refusals,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.inner.client.prefix())
            .field("secrets", &self.inner.secrets.len())
            .field("call_timeout", &self.inner.client.call_timeout())
            .field("circuit_open", &self.inner.client.circuit_open())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn new(
        client: RedisClient,
        subscriber: SubscriberClient,
        secrets: Vec<Secret>,
        max_value_bytes: usize,
        clock_skew: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            client,
            subscriber,
            secrets,
            max_value_bytes,
            clock_skew,
            clock,
            invalidations: broadcast::channel(256).0,
            refusals: Refusals::default(),
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn track(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        let (client, subscriber) = (self.client.fred().clone(), self.subscriber.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.quit().await;
                let _ = subscriber.quit().await;
            });
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisCache {
    /// The cache over `inner`; the builder then starts its subscriber task.
    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Whether the circuit is open (Redis skipped after repeated failures).
    pub fn circuit_open(&self) -> bool {
        self.inner.client.circuit_open()
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    /// Values read from Redis and refused since this cache was built, by kind
    /// (`bad_mac`, `missing_mac`, `too_large`, `bad_times`, ...; expired entries are not
    /// counted). Every kind is listed, refused or not.
    pub fn refusals(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut counts = self.inner.refusals.counts();
        counts.remove(Refused::Expired.code());
        counts
    }

    /// Reads and checks the envelope under `name`, or `None`.
    async fn read<V: CacheValue>(&self, name: &str) -> Result<Option<Entry<V>>, CacheError> {
        let client = &self.inner.client;
        let key = client.redis_key(name, "entry")?;
        let max = self.inner.max_value_bytes;
        // At most `max + 1` bytes come back, whatever was planted: an oversize value costs no
        // more than the limit. A value of another type answers WRONGTYPE, a missing key "".
        let read = async {
            match client
                .redis()
                .getrange::<Value, _>(key.as_str(), 0, max)
                .await
            {
                Err(error) if error.details().starts_with("WRONGTYPE") => Ok(None),
                outcome => outcome.map(Some),
            }
        };
        let bytes = match client.call(read).await? {
            None => return Ok(self.refuse(&key, Refused::WrongType)),
            Some(Value::Bytes(bytes)) => bytes,
            Some(Value::String(text)) => text.into_inner(),
            Some(Value::Null) => return Ok(None),
            Some(_) => return Ok(self.refuse(&key, Refused::NotAnEnvelope)),
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        if bytes.len() > max {
            return Ok(self.refuse(&key, Refused::TooLarge));
        }
        let secrets = &self.inner.secrets;
        let opened = match envelope::open(&key, &bytes, secrets, self.now(), self.inner.clock_skew)
        {
            Ok(opened) => opened,
            Err(reason) => return Ok(self.refuse(&key, reason)),
        };
        match V::from_bytes(opened.value) {
            Ok(value) => Ok(Some(opened.into_entry(value))),
            Err(_) => Ok(self.refuse(&key, Refused::BadValue)),
        }
    }

    /// Counts and logs a refused value (not an expired one: Redis entries expire anyway).
    fn refuse<T>(&self, key: &str, reason: Refused) -> Option<T> {
        if reason != Refused::Expired {
            self.inner.refusals.refuse(BACKEND, key, reason);
        }
        None
    }
}

#[async_trait]
impl<V: CacheValue + Clone> Cache<V> for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Entry<V>>, CacheError> {
        self.read(key).await
    }

    async fn put(&self, key: &str, entry: Entry<V>) -> Result<(), CacheError> {
        let client = &self.inner.client;
        let now = self.now();
        let Ok(ttl) = entry.usable_until.duration_since(now) else {
            return Ok(());
        };
        let redis_key = client.redis_key(key, "entry")?;
        let value = entry.value.to_bytes();
        let secret = self.inner.secrets.first().map(Secret::bytes);
        let sealed = envelope::seal(&redis_key, &entry, &value, secret).ok_or_else(|| {
            CacheError::new(BACKEND, CacheErrorKind::Other).with_source("value could not be sealed")
        })?;
        if sealed.len() > self.inner.max_value_bytes {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Other)
                .with_source("value over the size limit"));
        }
        let args: Vec<Value> = vec![
            Value::Bytes(sealed.into()),
            Value::Integer(unix_millis(entry.fetched_at) as i64),
            Value::Integer(millis(ttl).max(1) as i64),
            Value::Integer((unix_millis(now) + millis(self.inner.clock_skew)) as i64),
        ];
        let _written: i64 = client
            .script(&scripts::WRITE_IF_NEWER, vec![redis_key], args)
            .await?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), CacheError> {
        let client = &self.inner.client;
        let redis_key = client.redis_key(key, "entry")?;
        let _removed: i64 = client.call(client.redis().del(redis_key)).await?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}
