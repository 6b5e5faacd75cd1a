//! [`Verifier`]: `verify::<C>(token)` against one issuer's key set, through the cache stack.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::Algorithm;
use jwkstash_core::{Cache, KeySource, SharedClock, SharedTier, SystemClock, Tiered};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::alg::{AlgorithmSet, DEFAULT_ALGORITHMS};
use crate::claims::{ClaimRules, Registered};
use crate::error::{BuildError, InvalidToken, KeysUnavailable, VerifyError};
use crate::fleet::Fleet;
use crate::http::HttpKeySource;
use crate::keyset::{KeySet, VerifyingKey};
use crate::kid_query::KidQuery;
use crate::policy::FreshnessPolicy;
use crate::stats::{Counters, Stats};
use crate::store::{KeyStore, StoreParts};
use crate::template::IssuerTemplate;
use crate::token::{Token, decode_segment};
use crate::verified::{Checked, TokenHash, VerifiedTokens};

/// Tokens longer than this are refused before any decoding (configurable).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The cache stack type a verifier reads: parsed key sets behind any [`Cache`].
pub type KeySetCache = Arc<dyn Cache<Arc<KeySet>>>;

/// A tier shared by a fleet of verifiers (Redis): a cache with a lease and invalidations.
pub type SharedKeySetTier = Arc<dyn SharedTier<Arc<KeySet>>>;

/// Default lease TTL: a little over the default total fetch deadline (5 s).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(6);

/// Verifies JWTs of one issuer against its JWKS, calling the provider as rarely as the
/// [`FreshnessPolicy`] allows. Cheap to clone; clones share keys and counters.
///
/// A verification runs the cheap checks first (size, shape, header, algorithm allow-list,
/// `crit`, `kid`), then finds the key in the cached set (refetching for an unknown `kid` at most
/// once per cooldown), then checks the signature, and only then the claims (`exp` required,
/// `nbf`, `iss` exact, `aud`, leeway).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<KeyStore>,
    /// The issuer (or issuer template) named in logs and metrics.
    label: Box<str>,
    verified: Option<VerifiedTokens>,
    rules: ClaimRules,
    algorithms: AlgorithmSet,
    max_token_bytes: usize,
    required_typ: Option<Box<str>>,
    clock: SharedClock,
    counters: Arc<Counters>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.inner.rules.issuers)
            .field("audiences", &self.inner.rules.audiences)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A builder; `issuer`, an audience (or `any_audience`) and a key source are required.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// Verifies `token` and returns its claims as `C`.
    ///
    /// Errors are [`VerifyError::InvalidToken`] (answer 401) or
    /// [`VerifyError::KeysUnavailable`] (answer 503: the provider failed and no usable key set
    /// is left).
    ///
    /// With a `tracing` subscriber at debug level, each verification runs in a `jwkstash.verify`
    /// span with the issuer, a short hash of the `kid` and the outcome; never the token.
    pub async fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, VerifyError> {
        let span = tracing::debug_span!(
            "jwkstash.verify",
            issuer = &*self.inner.label,
            kid = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let outcome = self.verify_token(token).instrument(span.clone()).await;
        let counters = &self.inner.counters;
        let code = match &outcome {
            Ok(_) => {
                counters.verified();
                "verified"
            }
            Err(VerifyError::InvalidToken(reason)) => {
                counters.rejected();
                reason.code()
            }
            Err(_) => {
                counters.unavailable();
                "keys_unavailable"
            }
        };
        if !span.is_disabled() {
            span.record("outcome", code);
        }
        outcome
    }

    /// Loads the key set now (at start-up, so the first request does not wait).
    pub async fn prefetch(&self) -> Result<(), KeysUnavailable> {
        self.inner.store.current().await.map(drop)
    }

    /// The current key set, loading it if needed.
    pub async fn key_set(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        Ok(self.inner.store.current().await?.value)
    }

    /// Fetches the key set now, whatever its freshness and any backoff: for an emergency
    /// rotation (a key was compromised and removed upstream), so that tokens of the removed key
    /// are refused at once instead of at the next scheduled refresh.
    ///
    /// Coalesced: at most one fetch per
    /// [`min_refresh_interval`](FreshnessPolicy::min_refresh_interval) (default 5 s); calls
    /// within it, or while a fetch runs, share it. With a shared tier the interval is
    /// fleet-wide, and the new set reaches every instance through the tier's invalidations
    /// (each pins it; none fetches). The `jwkstash refresh` command does this from a shell.
    pub async fn refresh(&self) -> Result<Refreshed, KeysUnavailable> {
        let (entry, fetched) = self.inner.store.refresh().await?;
        Ok(Refreshed {
            fetched,
            key_set: entry.value,
        })
    }

    /// Drops the cached key set: this verifier's, and the entry of its cache stack (the shared
    /// tier's too). The next verification waits for a fetch; while the provider is down that
    /// means 503s, so prefer [`refresh`](Self::refresh), which replaces the set without a gap.
    /// Other instances of a fleet keep their copy until they refresh; to replace the set
    /// everywhere, call `refresh`.
    pub async fn invalidate(&self) -> Result<(), jwkstash_core::CacheError> {
        self.inner.store.invalidate().await
    }

    /// The state of the keys now (fresh, stale since/until, or unavailable with the time until
    /// the next fetch), for a readiness probe: read from memory, no I/O.
    pub fn health(&self) -> crate::KeyHealth {
        self.inner.store.health()
    }

    /// Events about this verifier's keys: the set changed (kids added and removed), a refresh
    /// failed (cause, retry after), a stale set was served (once per stale period), and in a
    /// fleet the fetch lease taken or outlasted. The channel is bounded
    /// ([`EVENT_CAPACITY`](crate::EVENT_CAPACITY)) and never slows a verification: a
    /// subscriber that falls behind receives `RecvError::Lagged` and loses the oldest events.
    /// Events are sent only while someone subscribes.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::KeyEvent> {
        self.inner.store.events.subscribe()
    }

    /// The issuer template whose issuers this verifier also accepts, if it has one.
    pub fn issuer_template(&self) -> Option<&IssuerTemplate> {
        self.inner.rules.template.as_ref()
    }

    /// The issuers whose tokens this verifier accepts, byte for byte (see also
    /// [`issuer_template`](Self::issuer_template)).
    pub fn issuers(&self) -> &[String] {
        &self.inner.rules.issuers
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    async fn verify_token<C: DeserializeOwned>(&self, raw: &str) -> Result<C, VerifyError> {
        let inner = &self.inner;
        let Some(verified) = &inner.verified else {
            return self.verify_afresh(raw).await.map(|(claims, _)| claims);
        };
        if raw.len() > inner.max_token_bytes {
            return Err(InvalidToken::TooLarge {
                limit: inner.max_token_bytes,
            }
            .into());
        }
        let hash = VerifiedTokens::hash(raw);
        if let Some(claims) = self.cached_verdict(verified, &hash).await? {
            return Ok(claims);
        }
        let (claims, checked) = self.verify_afresh(raw).await?;
        verified.insert(hash, checked.into());
        Ok(claims)
    }

    /// A token verified before, if it is still within its lifetime and its key is still in the
    /// current set; `None` sends it through the full verification.
    async fn cached_verdict<C: DeserializeOwned>(
        &self,
        verified: &VerifiedTokens,
        hash: &TokenHash,
    ) -> Result<Option<C>, VerifyError> {
        let Some(hit) = verified.get(hash) else {
            return Ok(None);
        };
        let entry = self.inner.store.current().await?;
        if !hit.key_still_in(&entry.value) {
            verified.remove(hash);
            return Ok(None);
        }
        self.inner
            .rules
            .check_times(hit.times, self.inner.clock.now())?;
        self.inner.counters.verified_token_hit();
        let claims = serde_json::from_slice(&hit.payload).map_err(|_| InvalidToken::ClaimsType)?;
        Ok(Some(claims))
    }

    async fn verify_afresh<C: DeserializeOwned>(
        &self,
        raw: &str,
    ) -> Result<(C, Checked), VerifyError> {
        let inner = &self.inner;
        let token = Token::parse(
            raw,
            inner.max_token_bytes,
            inner.algorithms,
            inner.required_typ.as_deref(),
        )?;
        let span = tracing::Span::current();
        if !span.is_disabled()
            && let Some(id) = &token.key_id
        {
            // A hash: the kid is attacker input and never reaches a log line raw.
            let hash = Sha256::digest(id.hash_input());
            span.record("kid", hex::encode(&hash[..6]).as_str());
        }
        let now = inner.clock.now();
        // The hit path: the pinned set, without the cache stack.
        let pinned = inner.store.with_pinned(now, |set| {
            (set.fingerprint(), self.attempt(set, &token, now))
        });
        let pinned = match pinned {
            Some((_, Attempt::Checked(outcome))) => {
                inner.counters.pinned_hit();
                return Ok(outcome?);
            }
            other => other,
        };
        let entry = inner.store.current().await?;
        let attempt = match pinned {
            Some((fingerprint, attempt)) if fingerprint == entry.value.fingerprint() => attempt,
            _ => self.attempt(&entry.value, &token, inner.clock.now()),
        };
        // Only a token that names its key (kid or certificate thumbprint) asks for a refetch.
        let (query, refused) = match (attempt, &token.key_id) {
            (Attempt::Checked(outcome), _) => return Ok(outcome?),
            (Attempt::UnknownKid, Some(id)) => (
                KidQuery::unknown(id, &entry.value),
                InvalidToken::UnknownKid,
            ),
            (Attempt::BadSignature { thumbprint }, Some(id)) => (
                KidQuery::failed_signature(id, thumbprint),
                InvalidToken::BadSignature,
            ),
            (Attempt::UnknownKid, None) => return Err(InvalidToken::UnknownKid.into()),
            (Attempt::BadSignature { .. }, None) => return Err(InvalidToken::BadSignature.into()),
        };
        let newer = inner.store.refetch_for_kid(query.clone(), &entry).await?;
        // Refused without another signature check when the new set changed nothing for this
        // kid (still absent, or the same key): the token is forged or names a kid that is gone.
        let Some(newer) = newer.filter(|newer| query.answered_by(&newer.value)) else {
            return Err(refused.into());
        };
        match self.attempt(&newer.value, &token, inner.clock.now()) {
            Attempt::Checked(outcome) => Ok(outcome?),
            Attempt::UnknownKid => Err(InvalidToken::UnknownKid.into()),
            Attempt::BadSignature { .. } => Err(InvalidToken::BadSignature.into()),
        }
    }

    /// Looks the token's key up in `set` and checks the token with it.
    fn attempt<C: DeserializeOwned>(
        &self,
        set: &KeySet,
        token: &Token<'_>,
        now: SystemTime,
    ) -> Attempt<(C, Checked)> {
        let key = match set.find_by(token.key_id.as_ref(), token.alg) {
            Ok(key) => key,
            Err(InvalidToken::UnknownKid) => return Attempt::UnknownKid,
            Err(refused) => return Attempt::Checked(Err(refused)),
        };
        match self.check(token, key, now) {
            Err(InvalidToken::BadSignature) if token.key_id.is_some() => Attempt::BadSignature {
                thumbprint: key.thumbprint(),
            },
            outcome => Attempt::Checked(outcome),
        }
    }

    /// Signature first, then claims: a forged token learns nothing about claim rules.
    fn check<C: DeserializeOwned>(
        &self,
        token: &Token<'_>,
        key: &VerifyingKey,
        now: SystemTime,
    ) -> Result<(C, Checked), InvalidToken> {
        self.inner.counters.signature_checked();
        let valid = jsonwebtoken::crypto::verify(
            token.signature,
            token.message.as_bytes(),
            key.decoding_key(),
            token.alg,
        )
        .unwrap_or(false);
        if !valid {
            return Err(InvalidToken::BadSignature);
        }
        let payload = decode_segment(token.payload)?;
        let rules = &self.inner.rules;
        let bound = rules.template.as_ref().map(IssuerTemplate::claim);
        let claims = Registered::parse_with(&payload, bound)?;
        let times = rules.check(&claims, now, key.issuer())?;
        let claims = serde_json::from_slice(&payload).map_err(|_| InvalidToken::ClaimsType)?;
        let checked = Checked {
            payload,
            times,
            // Only the verified-token cache needs the key's name: no copy otherwise.
            key_id: self.inner.verified.as_ref().and(token.key_id.clone()),
            alg: token.alg,
            key: key.thumbprint(),
        };
        Ok((claims, checked))
    }
}

/// Builds a [`Verifier`].
#[must_use]
pub struct VerifierBuilder {
    source: Option<SourceSpec>,
    template: Option<IssuerTemplate>,
    pinned_keys: Option<Vec<u8>>,
    http_loopback: bool,
    issuers: Vec<String>,
    audiences: Vec<String>,
    any_audience: bool,
    cache: Option<KeySetCache>,
    shared: Option<SharedKeySetTier>,
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
            template: None,
            pinned_keys: None,
            http_loopback: false,
            issuers: Vec::new(),
            audiences: Vec::new(),
            any_audience: false,
            cache: None,
            shared: None,
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

impl VerifierBuilder {
    /// The JWKS URL, fetched with an [`HttpKeySource`] of default settings (https only; see
    /// [`allow_http_loopback`](Self::allow_http_loopback) for a provider on this machine).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(SourceSpec::JwksUrl(url.into()));
        self
    }

    /// The issuer, with its keys found by OpenID Connect discovery (https only; see
    /// [`DiscoverySource`](crate::DiscoverySource) for other settings).
    pub fn discover(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let mut builder = self.issuer(issuer.as_str());
        builder.source = Some(SourceSpec::Discover(issuer));
        builder
    }

    /// Lets [`jwks_url`](Self::jwks_url) and [`discover`](Self::discover) use plain
    /// `http://` to loopback hosts only (`localhost`, 127.0.0.0/8, `::1`): local development
    /// against a provider on this machine, such as a Keycloak in a container on
    /// `http://localhost:8080`. Every other host still needs https.
    pub fn allow_http_loopback(mut self) -> Self {
        self.http_loopback = true;
        self
    }

    /// A key source of the caller's (an [`HttpKeySource`] with other settings, a mock).
    pub fn key_source(self, source: impl KeySource + 'static) -> Self {
        self.shared_key_source(Arc::new(source))
    }

    /// A shared key source.
    pub fn shared_key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.source = Some(SourceSpec::Ready(source));
        self
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

    /// The near (in-process) tier (default: a moka tier, with the `memory` feature).
    pub fn cache(mut self, cache: KeySetCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// A tier shared with the other instances of a fleet (such as Redis). The near tier stays
    /// in front of it; one instance fetches for all, and the others hear of new sets.
    pub fn shared_tier(mut self, tier: SharedKeySetTier) -> Self {
        self.shared = Some(tier);
        self
    }

    /// How long one instance may hold the fleet's fetch lease (default 6 s). Set it a little
    /// over the key source's total deadline.
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
            return Err(BuildError::InvalidSetting("an audience must not be empty"));
        }
        if self.audiences.is_empty() && !self.any_audience {
            return Err(BuildError::MissingAudience);
        }
        let algorithms = AlgorithmSet::of(&self.algorithms);
        if algorithms.is_empty() {
            return Err(BuildError::InvalidSetting(
                "no asymmetric algorithm allowed",
            ));
        }
        if self.required_typ.as_deref().is_some_and(str::is_empty) {
            return Err(BuildError::InvalidSetting("require_typ needs a media type"));
        }
        if self.max_token_bytes == 0 {
            return Err(BuildError::InvalidSetting(
                "max_token_bytes must be positive",
            ));
        }
        self.policy.validate()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        if self.lease_ttl.is_zero() {
            return Err(BuildError::InvalidSetting("lease_ttl must be positive"));
        }
        let near = match self.cache {
            Some(cache) => cache,
            None => default_cache(&clock)?,
        };
        let (cache, fleet) = match self.shared {
            Some(far) => {
                let far_cache: KeySetCache = far.clone();
                let stack: KeySetCache = Arc::new(Tiered::new(Arc::clone(&near), far_cache));
                let fleet = Fleet {
                    near,
                    far,
                    lease_ttl: self.lease_ttl,
                };
                (stack, Some(fleet))
            }
            None => (near, None),
        };
        if self
            .verified_tokens
            .is_some_and(|(capacity, ttl)| capacity == 0 || ttl.is_zero())
        {
            return Err(BuildError::InvalidSetting(
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
            cache,
            clock: Arc::clone(&clock),
            policy: self.policy,
            fleet,
            counters: Arc::clone(&counters),
        });
        Ok(Verifier {
            inner: Arc::new(Inner {
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
            }),
        })
    }
}

/// What [`Verifier::refresh`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Refreshed {
    /// Whether this call fetched (false: it shared a refresh made within
    /// `min_refresh_interval`, by this instance or, with a shared tier, another).
    pub fetched: bool,
    /// The set in use now.
    pub key_set: Arc<KeySet>,
}

/// What one key set said about a token.
enum Attempt<T> {
    /// A verdict: the token's claims, or why it is refused.
    Checked(Result<T, InvalidToken>),
    /// The set has no key with the token's `kid`.
    UnknownKid,
    /// The key under the token's `kid` (with this thumbprint) did not verify the signature:
    /// a forged token, or a provider that reused the kid for a new key.
    BadSignature { thumbprint: u64 },
}

/// Where the keys come from, built in `build()` so that settings given later apply.
enum SourceSpec {
    JwksUrl(String),
    Discover(String),
    Ready(Arc<dyn KeySource>),
}

#[cfg(feature = "memory")]
pub(crate) fn default_cache(clock: &SharedClock) -> Result<KeySetCache, BuildError> {
    Ok(Arc::new(
        jwkstash_memory::MemoryCache::builder()
            .clock(Arc::clone(clock))
            .build(),
    ))
}

#[cfg(not(feature = "memory"))]
pub(crate) fn default_cache(_: &SharedClock) -> Result<KeySetCache, BuildError> {
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
