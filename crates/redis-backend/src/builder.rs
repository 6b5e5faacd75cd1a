//! [`RedisCacheBuilder`]: where Redis is, how keys are named, how values are authenticated, and
//! how long a call may take.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use jwkstash_core::envelope::{Secrets, SecretsError};
use jwkstash_core::{SharedClock, SystemClock};

use crate::cache::{Inner, RedisCache};
use crate::circuit::Circuit;
use crate::client::RedisClient;
use crate::pubsub;

/// Default deadline of one Redis call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Default cap on a stored value (the envelope around a 256 KiB JWKS, with room to spare).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 512 * 1024;
const DEFAULT_FAILURES_TO_OPEN: u32 = 3;
const DEFAULT_COOL_OFF: Duration = Duration::from_secs(5);
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);
/// How long `build` waits for a first connection before going on without one.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(1);

/// A configuration that [`RedisCacheBuilder::build`] refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No URL, config or client was given.
    #[error("a redis url, config or client is required")]
    MissingServer,
    /// The prefix is empty or has characters other than `A-Za-z0-9_-.:`.
    #[error("the key prefix must be non-empty and made of A-Za-z0-9_-.:")]
    InvalidPrefix,
    /// The URL does not parse (the message never contains the password).
    #[error("invalid redis url")]
    InvalidUrl,
    /// The HMAC secret is shorter than 16 bytes.
    #[error("the HMAC secret must be at least 16 bytes")]
    WeakSecret,
    /// No HMAC secret was given, and authentication was not turned off by name: anyone who
    /// can write to Redis could otherwise choose the keys of the whole fleet.
    #[error("an HMAC secret is required (hmac_secret), or opt out with insecure_unauthenticated()")]
    MissingSecret,
    /// A duration or size is zero.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// fred refused the configuration.
    #[error("redis client could not be built")]
    Client(#[source] jwkstash_core::BoxError),
}

enum Server {
    Url(String),
    Config(Box<Config>),
    Client(Client),
}

impl From<SecretsError> for BuildError {
    fn from(error: SecretsError) -> Self {
        match error {
            SecretsError::NoCurrent => Self::MissingSecret,
            _ => Self::WeakSecret,
        }
    }
}

/// Builds a [`RedisCache`].
#[must_use]
pub struct RedisCacheBuilder {
    server: Option<Server>,
    prefix: String,
    secrets: Secrets,
    insecure: bool,
    call_timeout: Duration,
    max_value_bytes: usize,
    failures_to_open: u32,
    cool_off: Duration,
    clock_skew: Duration,
    clock: SharedClock,
}

impl fmt::Debug for RedisCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match &self.server {
            Some(Server::Url(url)) => redact(url),
            Some(Server::Config(_)) => "<config>".into(),
            Some(Server::Client(_)) => "<client>".into(),
            None => "<none>".into(),
        };
        f.debug_struct("RedisCacheBuilder")
            .field("server", &server)
            .field("prefix", &self.prefix)
            .field("secrets", &self.secrets)
            .field("insecure", &self.insecure)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

/// The URL with any password replaced, for logs and `Debug`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Default for RedisCacheBuilder {
    fn default() -> Self {
        Self {
            server: None,
            prefix: String::new(),
            secrets: Secrets::default(),
            insecure: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            failures_to_open: DEFAULT_FAILURES_TO_OPEN,
            cool_off: DEFAULT_COOL_OFF,
            clock_skew: DEFAULT_CLOCK_SKEW,
            clock: Arc::new(SystemClock),
        }
    }
}

impl RedisCacheBuilder {
    /// A Redis URL: `redis://[:password@]host:port[/db]`, `rediss://` (TLS),
    /// `redis-cluster://` or `redis-sentinel://` (fred's URL schemes).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.server = Some(Server::Url(url.into()));
        self
    }

    /// A ready fred configuration (standalone, Sentinel or Cluster).
    pub fn config(mut self, config: Config) -> Self {
        self.server = Some(Server::Config(Box::new(config)));
        self
    }

    /// A ready fred client (not yet connected, or connected: both work).
    pub fn client(mut self, client: Client) -> Self {
        self.server = Some(Server::Client(client));
        self
    }

    /// The key prefix (required, non-empty): every key and the channel start with it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Authenticates every stored value with HMAC-SHA256 under `secret` (at least 16 bytes;
    /// required unless [`insecure_unauthenticated`](Self::insecure_unauthenticated)). Values
    /// without a valid tag are refused, counted and logged once per kind. The secret is never
    /// written to Redis or logs: take it from the environment or a secret store.
    pub fn hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secrets.set_current(secret);
        self
    }

    /// A secret being rotated out: values tagged with it are still accepted, new values are
    /// tagged with [`hmac_secret`](Self::hmac_secret). Call again for more. Rotation: deploy
    /// the new secret as `hmac_secret` with the old one here, then drop the old one once every
    /// instance writes with the new one (after one TTL plus `max_stale`).
    pub fn previous_hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secrets.add_previous(secret);
        self
    }

    /// Stores and reads values without authentication. Whoever can write to this Redis (or
    /// publish on its channel) then chooses the keys the fleet trusts: use it only where Redis
    /// is as trusted as the service itself.
    pub fn insecure_unauthenticated(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The deadline of one call (default 250 ms).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The largest value read or written (default 512 KiB); larger ones read as a miss.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// After this many failures in a row (default 3) Redis is skipped for `cool_off` (default
    /// 5 s).
    pub fn circuit(mut self, failures: u32, cool_off: Duration) -> Self {
        self.failures_to_open = failures;
        self.cool_off = cool_off;
        self
    }

    /// The clock that judges stored times (inject the verifiers' clock in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Connects and builds the cache. A Redis that cannot be reached yet is not an error: calls
    /// fail fast (and the verifier works without the shared tier) until it connects.
    pub async fn build(mut self) -> Result<RedisCache, BuildError> {
        let valid_prefix = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !valid_prefix {
            return Err(BuildError::InvalidPrefix);
        }
        if !self.secrets.has_current() && !self.insecure {
            return Err(BuildError::MissingSecret);
        }
        let secrets = std::mem::take(&mut self.secrets).checked()?;
        if self.call_timeout.is_zero() || self.max_value_bytes == 0 {
            return Err(BuildError::InvalidSetting(
                "call_timeout and max_value_bytes must be positive",
            ));
        }
        let server = self.server.take().ok_or(BuildError::MissingServer)?;
        let (client, config) = match server {
            Server::Url(url) => {
                let config = Config::from_url(&url).map_err(|_| BuildError::InvalidUrl)?;
                (self.client_for(&config)?, config)
            }
            Server::Config(config) => (self.client_for(&config)?, *config),
            Server::Client(client) => {
                let config = client.client_config();
                (client, config)
            }
        };
        let subscriber = Builder::from_config(resilient(config))
            .set_policy(reconnect_policy())
            .build_subscriber_client()
            .map_err(|error| BuildError::Client(error.into()))?;
        if !client.is_connected() {
            client.connect();
        }
        subscriber.connect();
        for (name, connected) in [
            (
                "client",
                tokio::time::timeout(FIRST_CONNECT_WAIT, client.wait_for_connect()).await,
            ),
            (
                "subscriber",
                tokio::time::timeout(FIRST_CONNECT_WAIT, subscriber.wait_for_connect()).await,
            ),
        ] {
            if !matches!(connected, Ok(Ok(()))) {
                tracing::warn!(
                    name,
                    "redis not reachable yet; going on without the shared tier until it is"
                );
            }
        }
        let client = RedisClient::new(
            client,
            self.prefix,
            self.call_timeout,
            Circuit::new(self.failures_to_open, self.cool_off),
        );
        let inner = Inner::new(
            client,
            subscriber,
            secrets,
            self.max_value_bytes,
            self.clock_skew,
            self.clock,
        );
        let cache = RedisCache::new(inner);
        pubsub::start_subscriber(&cache);
        Ok(cache)
    }

    fn client_for(&self, config: &Config) -> Result<Client, BuildError> {
        Builder::from_config(resilient(config.clone()))
            .set_policy(reconnect_policy())
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(2);
                connection.max_command_attempts = 1;
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = self.call_timeout;
            })
            .build()
            .map_err(|error| BuildError::Client(error.into()))
    }
}

impl RedisCache {
    /// A builder; a server and a prefix are required.
    pub fn builder() -> RedisCacheBuilder {
        RedisCacheBuilder::default()
    }
}

/// Keep trying to connect from the first attempt on, rather than failing `init`.
fn resilient(mut config: Config) -> Config {
    config.fail_fast = false;
    config
}

/// Reconnect forever, from 100 ms up to 5 s between attempts.
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 5_000, 2)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:hunter2@host:6379/0"),
            "redis://<redacted>@host:6379/0"
        );
        assert_eq!(
            redact("rediss://user:p@ss@host"),
            "rediss://<redacted>@host"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
