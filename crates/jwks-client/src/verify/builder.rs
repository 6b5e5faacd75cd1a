//! [`VerifierBuilder`]: checks a verifier's settings and puts its parts together (the key
//! source, the cache stack, the fleet, the claim rules).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::jose::alg::Algorithm;
use jwkstash_core::{KeySource, SharedClock, SystemClock, Tiered};
use sha2::{Digest, Sha256};

use crate::error::BuildError;
use crate::jose::alg::{AlgorithmSet, DEFAULT_ALGORITHMS};
use crate::jose::claims::ClaimRules;
use crate::jose::template::IssuerTemplate;
use crate::source::http::HttpKeySource;
use crate::stats::Counters;
use crate::store::fleet::Fleet;
use crate::store::load::Loader;
use crate::store::policy::FreshnessPolicy;
use crate::store::tiers::{KeySetTier, KeyTiers, SharedKeySetTier};
use crate::store::{Alone, KeyStore, StoreParts};
use crate::verify::verified::VerifiedTokens;
use crate::verify::verifier::{
    DEFAULT_LEASE_TTL, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, Inner, Verifier,
};

/// Builds a [`Verifier`].
#[must_use]
pub struct VerifierBuilder {
    source: Option<SourceSpec>,
    /// The first two calls that contradicted each other, refused by `build()`.
    conflict: Option<(&'static str, &'static str)>,
    template: Option<IssuerTemplate>,
    pinned_keys: Option<Vec<u8>>,
    http_loopback: bool,
    issuers: Vec<String>,
    audiences: Vec<String>,
    any_audience: bool,
    near: Option<KeySetTier>,
    shared: Option<SharedKeySetTier>,
    snapshot: Option<SnapshotSpec>,
    lease_ttl: Duration,
    clock: Option<SharedClock>,
    policy: FreshnessPolicy,
    leeway: Duration,
    require_exp: bool,
    max_lifetime: Option<Duration>,
    accept_future_iat: bool,
    required_typ: Option<String>,
    algorithms: Vec<Algorithm>,
    max_token_bytes: usize,
    verified_tokens: Option<(u64, Duration)>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for VerifierBuilder {
    fn default() -> Self {
        Self {
            source: None,
            conflict: None,
            template: None,
            pinned_keys: None,
            http_loopback: false,
            issuers: Vec::new(),
            audiences: Vec::new(),
            any_audience: false,
            near: None,
            shared: None,
            snapshot: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            clock: None,
            policy: FreshnessPolicy::default(),
            leeway: DEFAULT_LEEWAY,
            require_exp: true,
            max_lifetime: None,
            accept_future_iat: false,
            required_typ: None,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            verified_tokens: None,
        }
    }
}

impl Verifier {
    /// A builder; `issuer`, an audience (or `any_audience`) and a key source are required.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }
}

impl VerifierBuilder {
    /// The JWKS URL, fetched with an [`HttpKeySource`] of default settings (https only; see
    /// [`allow_http_loopback`](Self::allow_http_loopback) for a provider on this machine).
    ///
    /// One of `jwks_url`, [`discover`](Self::discover) and [`key_source`](Self::key_source),
    /// once: `build()` refuses a second
    /// ([`BuildError::ConflictingCalls`](crate::BuildError::ConflictingCalls)).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.set_source(SourceSpec::JwksUrl(url.into()));
        self
    }

    /// The issuer, with its keys found by OpenID Connect discovery (https only; see
    /// [`DiscoverySource`](crate::DiscoverySource) for other settings). Instead of
    /// [`jwks_url`](Self::jwks_url) or [`key_source`](Self::key_source), not beside them.
    pub fn discover(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let mut builder = self.issuer(issuer.as_str());
        builder.set_source(SourceSpec::Discover(issuer));
        builder
    }

    /// Lets [`jwks_url`](Self::jwks_url) and [`discover`](Self::discover) use plain
    /// `http://` to loopback hosts only (`localhost`, 127.0.0.0/8, `::1`): local development
    /// against a provider on this machine, such as a Keycloak in a container on
    /// `http://localhost:8080`. Every other host still needs https. With
    /// [`key_source`](Self::key_source) `build()` refuses it: call it on the builder of that
    /// source instead ([`HttpKeySource::builder`],
    /// [`DiscoverySource::builder`](crate::DiscoverySource::builder)).
    pub fn allow_http_loopback(mut self) -> Self {
        if matches!(self.source, Some(SourceSpec::Ready(_))) {
            self.conflict("key_source()", "allow_http_loopback()");
        }
        self.http_loopback = true;
        self
    }

    /// A key source of the caller's: an [`HttpKeySource`] with other settings, a
    /// [`StaticKeySource`](crate::StaticKeySource), a [`Failover`](crate::Failover), a mock,
    /// or an `Arc` of one shared with other verifiers. Instead of
    /// [`jwks_url`](Self::jwks_url) or [`discover`](Self::discover), not beside them.
    pub fn key_source(mut self, source: impl KeySource + 'static) -> Self {
        if self.http_loopback {
            self.conflict("allow_http_loopback()", "key_source()");
        }
        self.set_source(SourceSpec::Ready(Arc::new(source)));
        self
    }

    /// Sets where the keys come from; a second call is a conflict for `build()` to refuse.
    fn set_source(&mut self, spec: SourceSpec) {
        if let Some(earlier) = &self.source {
            self.conflict(earlier.call(), spec.call());
        }
        self.source = Some(spec);
    }

    /// Records the first two calls that contradict each other.
    fn conflict(&mut self, first: &'static str, second: &'static str) {
        self.conflict.get_or_insert((first, second));
    }

    /// Keys of the application's own, as a JWKS document, merged into every set of the key
    /// source under their own kids (see [`WithPinnedKeys`](crate::WithPinnedKeys)): a key
    /// the provider does not publish yet, or one to keep through an outage. Each needs a kid;
    /// `build()` refuses a document without a usable key.
    pub fn pinned_keys(mut self, jwks: impl AsRef<[u8]>) -> Self {
        self.pinned_keys = Some(jwks.as_ref().to_vec());
        self
    }

    /// The issuer (`iss`) the tokens must name, byte for byte. Call again to accept several
    /// spellings of one issuer; the keys of this source verify tokens of these issuers only.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts every issuer that matches `template` (with a value equal to the token's claim
    /// the template names, and allowed), all verified with this verifier's one key set: a
    /// multi-tenant application whose tenants share their provider's keys, such as Entra ID's
    /// `https://login.microsoftonline.com/{tenantid}/v2.0` with the `common` JWKS. One cache
    /// entry and one fetch per refresh serve every tenant. With a template,
    /// [`issuer`](Self::issuer) is optional.
    pub fn issuer_template(mut self, template: IssuerTemplate) -> Self {
        self.template = Some(template);
        self
    }

    /// An accepted audience; a token's `aud` must name at least one. Call again for more.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts tokens whatever their `aud`. Only for services that check it themselves.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// The near tier: in-process, read first (default: a moka tier, with the `memory`
    /// feature).
    pub fn near_tier(mut self, tier: KeySetTier) -> Self {
        self.near = Some(tier);
        self
    }

    /// A tier shared with the other instances of a fleet (such as Redis). The near tier stays
    /// in front of it; one instance fetches for all, and the others hear of new sets.
    pub fn shared_tier(mut self, tier: SharedKeySetTier) -> Self {
        self.shared = Some(tier);
        self
    }

    /// Keeps the last set in `dir` (an existing, writable directory), the outermost tier: a
    /// process that starts while the provider is down verifies with the set it had, within
    /// `max_stale` (counted as `stale_served` once past its freshness), and refreshes in the
    /// background when the provider answers. Files are the raw JWKS in the Redis tier's
    /// envelope, written atomically and private to this user; without an HMAC secret a file
    /// is trusted as far as the file system protects it. For a secret or other settings, build
    /// a [`FileCache`](jwkstash_file::FileCache) and pass it to
    /// [`snapshot_tier`](Self::snapshot_tier). `build()` fails on a missing or read-only
    /// directory.
    #[cfg(feature = "file")]
    pub fn snapshot_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.snapshot = Some(SnapshotSpec::Dir(dir.into()));
        self
    }

    /// A snapshot tier of the caller's: read last, when the near and shared tiers have no set,
    /// and written with every new set (a [`FileCache`](jwkstash_file::FileCache) with a
    /// secret, or any [`Cache`](jwkstash_core::Cache) that outlives the process).
    pub fn snapshot_tier(mut self, tier: KeySetTier) -> Self {
        self.snapshot = Some(SnapshotSpec::Ready(tier));
        self
    }

    /// The TTL of the fleet's fetch lease (default 1.5 s): how long the fleet takes to notice
    /// that the instance fetching for it died. A live holder renews its lease every third of
    /// the TTL for as long as its fetch runs (bounded by
    /// [`fetch_timeout`](crate::FreshnessPolicy::fetch_timeout)), so a slow provider never
    /// makes a second instance fetch; the TTL need not cover the fetch.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The clock for freshness and claim times (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The freshness policy.
    pub fn policy(mut self, policy: FreshnessPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Clock-skew allowance for `exp` and `nbf`, in whole seconds (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether `exp` is required (default true).
    pub fn require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// Refuses tokens whose lifetime (`exp - iat`, or `exp - now` without `iat`) exceeds `max`.
    pub fn max_token_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// Accepts tokens whose `iat` lies in the future beyond the leeway (refused by default: such
    /// a token comes from a wrong clock or a wrong issuer).
    pub fn accept_future_iat(mut self, accept: bool) -> Self {
        self.accept_future_iat = accept;
        self
    }

    /// Requires the header's `typ` to name this media type (explicit typing, RFC 8725 §3.11),
    /// e.g. `at+jwt` for RFC 9068 access tokens: compared case-insensitively, with or without
    /// the `application/` prefix. Without it, a `typ` is optional but must be a string.
    pub fn require_typ(mut self, typ: impl Into<String>) -> Self {
        self.required_typ = Some(typ.into());
        self
    }

    /// The accepted algorithms (default: [`DEFAULT_ALGORITHMS`]). HMAC algorithms and `none`
    /// are never accepted, whatever is passed.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The longest token accepted, in bytes (default 16 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Caches verified tokens (off by default): a repeated token is answered without a second
    /// signature check, for at most `ttl` and at most until its `exp`, keeping at most
    /// `capacity` tokens (keyed by the SHA-256 of the whole token).
    ///
    /// The trade-off: a cached token is not checked cryptographically again. Every hit still
    /// checks `exp`/`nbf` against the clock and that the token's key (same `kid`, same key
    /// material) is in the issuer's current set, so a key removed upstream invalidates its
    /// tokens at the next refresh. Each entry holds the token's decoded payload.
    pub fn cache_verified_tokens(mut self, capacity: u64, ttl: Duration) -> Self {
        self.verified_tokens = Some((capacity, ttl));
        self
    }

    /// Checks the configuration and builds the verifier. Nothing is fetched yet.
    pub fn build(self) -> Result<Verifier, BuildError> {
        if let Some((first, second)) = self.conflict {
            return Err(BuildError::ConflictingCalls { first, second });
        }
        let source = match self.source.ok_or(BuildError::MissingKeySource)? {
            SourceSpec::Ready(source) => source,
            SourceSpec::JwksUrl(url) => {
                let builder = HttpKeySource::builder(url);
                let builder = if self.http_loopback {
                    builder.allow_http_loopback()
                } else {
                    builder
                };
                Arc::new(builder.build()?)
            }
            SourceSpec::Discover(issuer) => {
                let builder = crate::DiscoverySource::builder(issuer);
                let builder = if self.http_loopback {
                    builder.allow_http_loopback()
                } else {
                    builder
                };
                Arc::new(builder.build()?)
            }
        };
        let source: Arc<dyn KeySource> = match &self.pinned_keys {
            Some(pinned) => Arc::new(
                crate::WithPinnedKeys::new(source, pinned).map_err(BuildError::PinnedKeys)?,
            ),
            None => source,
        };
        if (self.issuers.is_empty() && self.template.is_none())
            || self.issuers.iter().any(String::is_empty)
        {
            return Err(BuildError::MissingIssuer);
        }
        let label: Box<str> = match (self.issuers.first(), &self.template) {
            (Some(issuer), _) => issuer.as_str().into(),
            (None, Some(template)) => template.as_str().into(),
            (None, None) => return Err(BuildError::MissingIssuer),
        };
        if self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::invalid_setting("an audience must not be empty"));
        }
        if self.audiences.is_empty() && !self.any_audience {
            return Err(BuildError::MissingAudience);
        }
        let algorithms = AlgorithmSet::of(&self.algorithms);
        if algorithms.is_empty() {
            return Err(BuildError::invalid_setting(
                "algorithms() allows no asymmetric algorithm (HMAC and none are never \
                 accepted): pass some of DEFAULT_ALGORITHMS",
            ));
        }
        if self.required_typ.as_deref().is_some_and(str::is_empty) {
            return Err(BuildError::invalid_setting(
                "require_typ needs a media type",
            ));
        }
        if self.max_token_bytes == 0 {
            return Err(BuildError::invalid_setting(
                "max_token_bytes must be positive (default 16 KiB)",
            ));
        }
        self.policy.validate()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        if self.lease_ttl.is_zero() {
            return Err(BuildError::invalid_setting(format!(
                "lease_ttl must be positive (default {})",
                crate::error::human(DEFAULT_LEASE_TTL)
            )));
        }
        let near = match self.near {
            Some(cache) => cache,
            None => default_cache(&clock)?,
        };
        let (tiers, loader): (_, Box<dyn Loader>) = match self.shared {
            Some(shared) => {
                let fleet = Fleet {
                    shared: Arc::clone(&shared),
                    lease_ttl: self.lease_ttl,
                    about: about(&self.issuers, self.template.as_ref(), source.id()),
                    listener: std::sync::OnceLock::new(),
                };
                (Tiered::new(near, shared), Box::new(fleet))
            }
            None => (Tiered::alone(near), Box::new(Alone)),
        };
        let snapshot = self.snapshot.map(|spec| spec.build(&clock)).transpose()?;
        let tiers: KeyTiers = tiers.with_snapshot(snapshot);
        if self
            .verified_tokens
            .is_some_and(|(capacity, ttl)| capacity == 0 || ttl.is_zero())
        {
            return Err(BuildError::invalid_setting(
                "the verified-token cache needs a capacity and a TTL",
            ));
        }
        let verified = self
            .verified_tokens
            .map(|(capacity, ttl)| VerifiedTokens::new(capacity, ttl, Arc::clone(&clock)));
        let counters = Arc::new(Counters::new(&label));
        // The template is part of the entry's name: its keys serve its tenants, one entry
        // for all of them.
        let mut named: Vec<String> = self.issuers.clone();
        named.extend(
            self.template
                .as_ref()
                .map(|t| format!("template:{}", t.as_str())),
        );
        let store = KeyStore::new(StoreParts {
            cache_key: cache_key(&named, source.id()),
            source,
            tiers,
            clock: Arc::clone(&clock),
            policy: self.policy,
            loader,
            counters: Arc::clone(&counters),
        });
        Ok(Verifier::from_parts(Inner {
            store,
            verified,
            label,
            rules: ClaimRules {
                issuers: self.issuers,
                template: self.template,
                audiences: (!self.any_audience).then_some(self.audiences),
                leeway: self.leeway,
                require_exp: self.require_exp,
                max_lifetime: self.max_lifetime,
                reject_future_iat: !self.accept_future_iat,
            },
            algorithms,
            max_token_bytes: self.max_token_bytes,
            required_typ: self.required_typ.map(String::into_boxed_str),
            clock,
            counters,
        }))
    }
}

/// What a fleet member's entry holds, for the shared tier's directory: the names an operator
/// knows it by (issuers, template) and where its keys come from.
fn about(
    issuers: &[String],
    template: Option<&IssuerTemplate>,
    source_id: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let mut about = serde_json::Map::new();
    about.insert("issuers".into(), issuers.into());
    if let Some(template) = template {
        about.insert("template".into(), template.as_str().into());
        about.insert("claim".into(), template.claim().into());
    }
    about.insert("source".into(), source_id.into());
    about
}

/// The snapshot tier, built in `build()` with the verifier's clock.
enum SnapshotSpec {
    #[cfg(feature = "file")]
    Dir(std::path::PathBuf),
    Ready(KeySetTier),
}

impl SnapshotSpec {
    fn build(self, clock: &SharedClock) -> Result<KeySetTier, BuildError> {
        match self {
            #[cfg(feature = "file")]
            Self::Dir(dir) => Ok(Arc::new(
                jwkstash_file::FileCache::builder(dir)
                    .clock(Arc::clone(clock))
                    .build()
                    .map_err(BuildError::Snapshot)?,
            )),
            Self::Ready(tier) => {
                let _ = clock;
                Ok(tier)
            }
        }
    }
}

/// Where the keys come from, built in `build()` so that settings given later apply.
enum SourceSpec {
    JwksUrl(String),
    Discover(String),
    Ready(Arc<dyn KeySource>),
}

impl SourceSpec {
    /// The builder call that gave it.
    fn call(&self) -> &'static str {
        match self {
            Self::JwksUrl(_) => "jwks_url()",
            Self::Discover(_) => "discover()",
            Self::Ready(_) => "key_source()",
        }
    }
}

#[cfg(feature = "memory")]
pub(crate) fn default_cache(clock: &SharedClock) -> Result<KeySetTier, BuildError> {
    Ok(Arc::new(
        jwkstash_memory::MemoryCache::builder()
            .clock(Arc::clone(clock))
            .build(),
    ))
}

#[cfg(not(feature = "memory"))]
pub(crate) fn default_cache(_: &SharedClock) -> Result<KeySetTier, BuildError> {
    Err(BuildError::MissingCache)
}

/// The cache key of a source: a hash of its issuers and id, so nothing raw reaches a cache key
/// and keys of one issuer are never served for another.
fn cache_key(issuers: &[String], source_id: &str) -> String {
    let mut issuers: Vec<&str> = issuers.iter().map(String::as_str).collect();
    issuers.sort_unstable();
    issuers.dedup();
    let mut hash = Sha256::new();
    for issuer in issuers {
        hash.update(issuer.as_bytes());
        hash.update([0]);
    }
    hash.update([0xff]);
    hash.update(source_id.as_bytes());
    format!("jwks:{}", &hex::encode(hash.finalize())[..32])
}
