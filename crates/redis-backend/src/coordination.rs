//! [`Lease`] and [`Directory`] in Redis: `SET NX PX` leases, claims by Lua script, and the
//! directory of announced entries in one hash.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use fred::prelude::{HashesInterface, KeysInterface};
use fred::types::{Expiration, SetOptions, Value};
use jwkstash_core::{
    CacheError, CacheErrorKind, Directory, Lease, LeaseToken, MAX_ABOUT_BYTES, from_unix_millis,
    unix_millis,
};

use crate::cache::RedisCache;
use crate::client::BACKEND;
use crate::scripts;

/// Claims are kept at least this long, whatever their period.
const MIN_CLAIM_RETENTION: Duration = Duration::from_secs(60);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Lease for RedisCache {
    async fn acquire(&self, key: &str, ttl: Duration) -> Result<Option<LeaseToken>, CacheError> {
        let client = &self.inner.client;
        let lease = client.redis_key(key, "lease")?;
        let token = LeaseToken::random();
        let set: Value = client
            .call(client.redis().set(
                lease,
                token.as_str(),
                Some(Expiration::PX(millis(ttl).max(1))),
                Some(SetOptions::NX),
                false,
            ))
            .await?;
        // A refused `SET NX` answers nil.
        Ok((!set.is_null()).then_some(token))
    }

    async fn release(&self, key: &str, token: &LeaseToken) -> Result<(), CacheError> {
        let client = &self.inner.client;
        let lease = client.redis_key(key, "lease")?;
        let _released: i64 = client
            .script(
                &scripts::RELEASE_LEASE,
                vec![lease],
                vec![Value::from(token.as_str())],
            )
            .await?;
        Ok(())
    }

    async fn renew(
        &self,
        key: &str,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let client = &self.inner.client;
        let lease = client.redis_key(key, "lease")?;
        let renewed: i64 = client
            .script(
                &scripts::RENEW_LEASE,
                vec![lease],
                vec![
                    Value::from(token.as_str()),
                    Value::Integer(millis(ttl).max(1)),
                ],
            )
            .await?;
        Ok(renewed == 1)
    }

    async fn claim_period(
        &self,
        key: &str,
        slot: &str,
        now: SystemTime,
        period: Duration,
    ) -> Result<bool, CacheError> {
        let client = &self.inner.client;
        let claim = client.redis_key(key, slot)?;
        let args: Vec<Value> = vec![
            Value::Integer(unix_millis(now) as i64),
            Value::Integer(millis(period)),
            Value::Integer(millis(period.max(MIN_CLAIM_RETENTION))),
            Value::Integer(millis(self.inner.clock_skew)),
        ];
        let claimed: i64 = client
            .script(&scripts::CLAIM_PERIOD, vec![claim], args)
            .await?;
        Ok(claimed == 1)
    }

    async fn last_claimed(&self, key: &str, slot: &str) -> Result<Option<SystemTime>, CacheError> {
        let client = &self.inner.client;
        let claim = client.redis_key(key, slot)?;
        let value: Option<String> = client.call(client.redis().get(claim)).await?;
        Ok(value
            .and_then(|millis| millis.parse::<u64>().ok())
            .map(from_unix_millis))
    }
}

/// The most entries `announced` reads: a directory planted larger is refused, not read.
const MAX_DIRECTORY_ENTRIES: i64 = 100_000;

/// The directory is one Redis hash, `PREFIX:directory`: field the cache key, value its `about`.
#[async_trait]
impl Directory for RedisCache {
    async fn announce(&self, key: &str, about: &str) -> Result<(), CacheError> {
        if about.len() > MAX_ABOUT_BYTES {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Other)
                .with_source("directory document too long"));
        }
        let client = &self.inner.client;
        // Checked like every key name, though it is only a field here.
        client.redis_key(key, "entry")?;
        let _added: i64 = client
            .call(client.redis().hset(client.directory(), (key, about)))
            .await?;
        Ok(())
    }

    async fn announced(&self) -> Result<Vec<(String, String)>, CacheError> {
        let client = &self.inner.client;
        let directory = client.directory();
        let entries: i64 = client.call(client.redis().hlen(&directory)).await?;
        if entries > MAX_DIRECTORY_ENTRIES {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Other)
                .with_source("directory larger than any fleet writes"));
        }
        let all: std::collections::HashMap<String, String> =
            client.call(client.redis().hgetall(&directory)).await?;
        Ok(all
            .into_iter()
            .filter(|(_, about)| about.len() <= MAX_ABOUT_BYTES)
            .collect())
    }
}
