//! [`DiscoverySource`]: a key source built from an issuer URL by OpenID Connect discovery.
//!
//! `GET {issuer}/.well-known/openid-configuration`; its `issuer` must equal the configured one
//! byte for byte; its `jwks_uri` (https unless allowed) is then fetched like any JWKS URL. The
//! document is kept for its own TTL (default 24 h) in the source, and in a shared tier when one
//! is given; a JWKS answering 404 or 410 sends the next fetch back to discovery.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jwkstash_core::{
    Cache, CacheError, CacheValue, DecodeError, Entry, FetchError, Fetched, KeySource, SharedClock,
    SystemClock, Tiered, Validators,
};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::BuildError;
use crate::source::fetcher::{Fetcher, HttpOptions, checked_url, http_option_setters};
use crate::source::http::JWKS_MEDIA_TYPES;

/// How long a discovery document is used before it is fetched again.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(24 * 3600);
const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// The members of an OpenID Provider configuration that jwkstash uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Discovery {
    /// The provider's issuer identifier.
    pub issuer: String,
    /// Where its JWKS is published.
    pub jwks_uri: String,
}

impl CacheValue for Discovery {
    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|error| DecodeError(error.to_string()))
    }
}

/// A [`KeySource`] for an issuer: finds its JWKS by OpenID Connect discovery, then fetches it
/// with the same deadlines, body cap and redirect rules as an [`HttpKeySource`](crate::HttpKeySource).
pub struct DiscoverySource {
    issuer: String,
    configuration: Url,
    fetcher: Fetcher,
    ttl: Duration,
    clock: SharedClock,
    /// This source's copy of the document over the fleet's, if one is shared.
    tiers: Tiered<Slot, Arc<dyn Cache<Discovery>>>,
    /// The document's name in the shared tier.
    key: String,
}

/// The near tier of a discovery source: the one document it knows.
#[derive(Debug, Default)]
struct Slot(Mutex<Option<Entry<Discovery>>>);

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Entry<Discovery>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Cache<Discovery> for Slot {
    async fn get(&self, _: &str) -> Result<Option<Entry<Discovery>>, CacheError> {
        Ok(self.lock().clone())
    }

    async fn put(&self, _: &str, entry: Entry<Discovery>) -> Result<(), CacheError> {
        *self.lock() = Some(entry);
        Ok(())
    }

    async fn remove(&self, _: &str) -> Result<(), CacheError> {
        *self.lock() = None;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "discovery"
    }
}

impl std::fmt::Debug for DiscoverySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoverySource")
            .field("issuer", &self.issuer)
            .field("configuration", &self.configuration.as_str())
            .finish_non_exhaustive()
    }
}

/// Builds a [`DiscoverySource`].
#[must_use]
pub struct DiscoverySourceBuilder {
    issuer: String,
    http: HttpOptions,
    ttl: Duration,
    clock: Option<SharedClock>,
    shared: Option<Arc<dyn Cache<Discovery>>>,
}

impl std::fmt::Debug for DiscoverySourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoverySourceBuilder")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DiscoverySource {
    /// A builder for the provider whose issuer identifier is `issuer`.
    pub fn builder(issuer: impl Into<String>) -> DiscoverySourceBuilder {
        DiscoverySourceBuilder {
            issuer: issuer.into(),
            http: HttpOptions::default(),
            ttl: DEFAULT_DISCOVERY_TTL,
            clock: None,
            shared: None,
        }
    }

    /// The issuer this source serves.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS URL, from the kept discovery document or by discovering it now.
    pub async fn jwks_uri(&self) -> Result<Url, FetchError> {
        let now = self.clock.now();
        let kept = self.kept().await;
        if let Some(entry) = kept.as_ref().filter(|entry| entry.is_fresh(now)) {
            return self.usable_uri(&entry.value);
        }
        match self.discover().await {
            Ok(url) => Ok(url),
            Err(error) => match kept.filter(|entry| entry.is_usable(now)) {
                // The provider's configuration endpoint is down: keep the known JWKS URL.
                Some(stale) => {
                    tracing::warn!(%error, issuer = self.issuer, "discovery failed; using the last document");
                    self.usable_uri(&stale.value)
                }
                None => Err(error),
            },
        }
    }

    /// The document this source or, through the shared tier, its fleet discovered.
    async fn kept(&self) -> Option<Entry<Discovery>> {
        let read = self.tiers.read(&self.key, Some).await;
        read.ok().flatten().map(|(entry, _)| entry)
    }

    async fn forget(&self) {
        // The slot never fails; the shared tier's failures are counted and logged by `Tiered`.
        let _ = self.tiers.remove(&self.key).await;
    }

    fn usable_uri(&self, discovery: &Discovery) -> Result<Url, FetchError> {
        self.fetcher
            .check_url(&discovery.jwks_uri)
            .map_err(|error| FetchError::Discovery(format!("jwks_uri refused: {error}")))
    }

    async fn discover(&self) -> Result<Url, FetchError> {
        let body = match self
            .fetcher
            .get(
                &self.configuration,
                &Validators::default(),
                "application/json",
            )
            .await?
        {
            Fetched::Modified { body, .. } => body,
            Fetched::NotModified { .. } => {
                return Err(FetchError::Discovery("unexpected 304".into()));
            }
        };
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|_| FetchError::Discovery("not an OpenID configuration".into()))?;
        if discovery.issuer != self.issuer {
            return Err(FetchError::Discovery(
                "its issuer differs from the configured one".into(),
            ));
        }
        let url = self.usable_uri(&discovery)?;
        let now = self.clock.now();
        let entry = Entry::new(discovery, now, now + self.ttl, now + 2 * self.ttl);
        // The slot never fails; the shared tier's failures are counted and logged by `Tiered`.
        let _ = self.tiers.put(&self.key, entry).await;
        tracing::debug!(issuer = self.issuer, "discovered the JWKS URL");
        Ok(url)
    }
}

#[async_trait]
impl KeySource for DiscoverySource {
    fn id(&self) -> &str {
        self.configuration.as_str()
    }

    async fn fetch(&self, validators: &Validators) -> Result<Fetched, FetchError> {
        let jwks_uri = self.jwks_uri().await?;
        let fetched = self
            .fetcher
            .get(&jwks_uri, validators, JWKS_MEDIA_TYPES)
            .await;
        if let Err(FetchError::Status(404 | 410)) = fetched {
            // The JWKS moved: discover again next time.
            self.forget().await;
        }
        fetched
    }
}

impl DiscoverySourceBuilder {
    http_option_setters!();

    /// How long a discovery document is used (default 24 h).
    pub fn discovery_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The clock that ages the discovery document.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Keeps the discovery document in a shared tier too (a `RedisCache`), so a fleet discovers
    /// once.
    pub fn shared_tier(mut self, cache: Arc<dyn Cache<Discovery>>) -> Self {
        self.shared = Some(cache);
        self
    }

    /// Checks the issuer URL and settings and builds the source. Nothing is fetched yet.
    pub fn build(self) -> Result<DiscoverySource, BuildError> {
        let issuer_url = checked_url(&self.issuer, self.http.plain_http)?;
        let configuration = format!("{}{WELL_KNOWN}", issuer_url.as_str().trim_end_matches('/'));
        let configuration = checked_url(&configuration, self.http.plain_http)?;
        if self.ttl.is_zero() {
            return Err(BuildError::invalid_setting(
                "discovery_ttl must be positive (default 24 h)",
            ));
        }
        let key = format!(
            "oidc:{}",
            &hex::encode(Sha256::digest(self.issuer.as_bytes()))[..32]
        );
        Ok(DiscoverySource {
            configuration,
            fetcher: self.http.build()?,
            ttl: self.ttl,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            tiers: match self.shared {
                Some(shared) => Tiered::new(Slot::default(), shared),
                None => Tiered::alone(Slot::default()),
            },
            key,
            issuer: self.issuer,
        })
    }
}
