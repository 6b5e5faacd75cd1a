//! The call rules every Redis call follows: key naming, a deadline, the circuit, and scripts
//! run by `EVALSHA`.

use std::future::Future;

use fred::clients::Client;
use fred::prelude::{ClientLike, LuaInterface, Options};
use fred::types::Value;
use jwkstash_core::{CacheError, CacheErrorKind};

use crate::cache::{BACKEND, RedisCache};
use crate::scripts;

/// The longest cache key or slot name accepted (jwkstash's are ~40 bytes).
const MAX_NAME_BYTES: usize = 200;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

impl RedisCache {
    /// The Redis key of `name`'s `part`: `PREFIX:{name}:part`. The braces are a Cluster hash
    /// tag, so an entry, its lease and its claims live in one slot.
    pub(crate) fn redis_key(&self, name: &str, part: &str) -> Result<String, CacheError> {
        if !valid_name(name) || !valid_name(part) {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Other)
                .with_source("cache key or slot name refused"));
        }
        Ok(format!("{}:{{{name}}}:{part}", self.inner.prefix))
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}:invalidations", self.inner.prefix)
    }

    /// The hash of announced entries ([`Directory`](jwkstash_core::Directory)).
    pub(crate) fn directory(&self) -> String {
        format!("{}:directory", self.inner.prefix)
    }

    /// The client with per-call options: fail at once when disconnected, one attempt, and
    /// fred's own deadline beside ours.
    pub(crate) fn redis(&self) -> fred::clients::WithOptions<Client> {
        self.inner.client.with_options(&Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(self.inner.call_timeout),
            ..Options::default()
        })
    }

    /// Runs one Redis call under the deadline and the circuit.
    pub(crate) async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        if self.inner.circuit.is_open() {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Unavailable)
                .with_source("circuit open after repeated failures"));
        }
        let outcome = match tokio::time::timeout(self.inner.call_timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let kind = match error.kind() {
                    fred::error::ErrorKind::Timeout => CacheErrorKind::Timeout,
                    fred::error::ErrorKind::IO
                    | fred::error::ErrorKind::Canceled
                    | fred::error::ErrorKind::Auth
                    | fred::error::ErrorKind::Cluster
                    | fred::error::ErrorKind::Backpressure => CacheErrorKind::Unavailable,
                    _ => CacheErrorKind::Other,
                };
                Err(CacheError::new(BACKEND, kind).with_source(error))
            }
            Err(_) => Err(CacheError::new(BACKEND, CacheErrorKind::Timeout)),
        };
        match &outcome {
            Ok(_) => self.inner.circuit.succeeded(),
            Err(_) => self.inner.circuit.failed(),
        }
        outcome
    }

    /// Runs a script by `EVALSHA`, loading it with `EVAL` if Redis does not know it, all under
    /// one deadline.
    pub(crate) async fn script<R: fred::types::FromValue>(
        &self,
        script: &scripts::LuaScript,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, CacheError> {
        let attempt = async {
            let redis = self.redis();
            match redis
                .evalsha(script.hash(), keys.clone(), args.clone())
                .await
            {
                Err(error) if error.details().starts_with("NOSCRIPT") => {
                    redis.eval(script.lua, keys, args).await
                }
                outcome => outcome,
            }
        };
        self.call(attempt).await
    }
}
