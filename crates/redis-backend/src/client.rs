//! [`RedisClient`]: the fred client and the rules every Redis call follows (key naming, a
//! deadline, the circuit, scripts run by `EVALSHA`). The cache, coordination and pub/sub
//! modules make their calls through it.

use std::future::Future;
use std::time::Duration;

use fred::clients::Client;
use fred::prelude::{ClientLike, LuaInterface, Options};
use fred::types::Value;
use jwkstash_core::{CacheError, CacheErrorKind};

use crate::circuit::Circuit;
use crate::scripts;

/// The backend name in errors and logs.
pub(crate) const BACKEND: &str = "redis";
/// The longest cache key or slot name accepted (jwkstash's are ~40 bytes).
const MAX_NAME_BYTES: usize = 200;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// The fred client, the key prefix, the deadline of one call and the circuit.
pub(crate) struct RedisClient {
    client: Client,
    prefix: String,
    call_timeout: Duration,
    circuit: Circuit,
}

impl RedisClient {
    pub(crate) fn new(
        client: Client,
        prefix: String,
        call_timeout: Duration,
        circuit: Circuit,
    ) -> Self {
        Self {
            client,
            prefix,
            call_timeout,
            circuit,
        }
    }

    /// The fred client itself, without the per-call options (to quit it).
    pub(crate) fn fred(&self) -> &Client {
        &self.client
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Whether the circuit is open (calls refused after repeated failures).
    pub(crate) fn circuit_open(&self) -> bool {
        self.circuit.is_open()
    }

    /// The Redis key of `name`'s `part`: `PREFIX:{name}:part`. The braces are a Cluster hash
    /// tag, so an entry, its lease and its claims live in one slot.
    pub(crate) fn redis_key(&self, name: &str, part: &str) -> Result<String, CacheError> {
        if !valid_name(name) || !valid_name(part) {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Other)
                .with_source("cache key or slot name refused"));
        }
        Ok(format!("{}:{{{name}}}:{part}", self.prefix))
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}:invalidations", self.prefix)
    }

    /// The hash of announced entries ([`Directory`](jwkstash_core::Directory)).
    pub(crate) fn directory(&self) -> String {
        format!("{}:directory", self.prefix)
    }

    /// The client with per-call options: fail at once when disconnected, one attempt, and
    /// fred's own deadline beside ours.
    pub(crate) fn redis(&self) -> fred::clients::WithOptions<Client> {
        self.client.with_options(&Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(self.call_timeout),
            ..Options::default()
        })
    }

    /// Runs one Redis call under the deadline and the circuit.
    pub(crate) async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        if self.circuit.is_open() {
            return Err(CacheError::new(BACKEND, CacheErrorKind::Unavailable)
                .with_source("circuit open after repeated failures"));
        }
        let outcome = match tokio::time::timeout(self.call_timeout, op).await {
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
            Ok(_) => self.circuit.succeeded(),
            Err(_) => self.circuit.failed(),
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
