//! [`Issuers`]: many issuers (tenants) in one process. A token's `iss` selects the verifier of
//! that issuer: one configured for it, a template verifier whose pattern it matches, or one the
//! application's [`IssuerResolver`] builds on first sight. An `iss` that none of them accepts is
//! refused without any network request, and remembered (bounded, expiring) so that random
//! issuers cost nothing more.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use jwkstash_core::SingleFlight;

use crate::jose::error::InvalidToken;
use crate::jose::token::decode_segment;
use crate::store::error::{KeysUnavailable, RefreshError};
use crate::store::policy::DEFAULT_FETCH_TIMEOUT;
use crate::store::tiers::KeySetTier;
use crate::verify::builder::VerifierBuilder;
use crate::verify::error::VerifyError;
use crate::verify::verifier::{DEFAULT_MAX_TOKEN_BYTES, Verifier};

/// The longest `iss` the registry looks up or resolves, in bytes.
pub const MAX_ISSUER_BYTES: usize = 512;
/// Default bound on issuers built by a resolver and kept at once.
pub const DEFAULT_MAX_RESOLVED: u64 = 10_000;
/// Default time after which an unused resolved issuer is dropped.
pub const DEFAULT_RESOLVED_IDLE: Duration = Duration::from_secs(3600);
/// Default bound on refused issuers remembered.
pub const DEFAULT_MAX_REFUSED: u64 = 10_000;
/// Default time a refused issuer is remembered (and not asked about again).
pub const DEFAULT_REFUSED_TTL: Duration = Duration::from_secs(300);
/// Default `issuer` label of the metrics (feature `metrics`) of every verifier a resolver
/// builds: one value for all of them, so that their series do not grow with the tenants.
pub const DEFAULT_RESOLVED_METRICS_LABEL: &str = "resolved";

/// Decides, on the first token of an issuer the registry does not know, whether to accept it
/// and how: `Some(builder)` with the key source, audience and policy for that issuer (the
/// builder given already names the issuer and carries the registry's near tier), or `None` to
/// refuse it. Called at most once per issuer at a time; its answer is kept (a refusal for
/// `refused_ttl`, a verifier until it is idle for `resolved_idle`).
///
/// It sees the issuer of a token whose signature is not yet checked: decide from the
/// application's own tenant table, never by fetching a URL derived from the issuer unless
/// that issuer is known to be trusted.
#[async_trait]
pub trait IssuerResolver: Send + Sync {
    /// The settings for `issuer`, or `None` to refuse it.
    async fn resolve(&self, issuer: &str, builder: VerifierBuilder) -> Option<VerifierBuilder>;
}

#[async_trait]
impl<F> IssuerResolver for F
where
    F: Fn(&str, VerifierBuilder) -> Option<VerifierBuilder> + Send + Sync,
{
    async fn resolve(&self, issuer: &str, builder: VerifierBuilder) -> Option<VerifierBuilder> {
        self(issuer, builder)
    }
}

/// A registry of verifiers by issuer. Cheap to clone; clones share the registry.
///
/// Each verifier keeps its own key source, audience and policy, and its keys verify only tokens
/// of its issuer(s): routing by the (not yet verified) `iss` only chooses which verifier checks
/// the token, and that verifier checks `iss` again, with the signature. Issuers can be added and
/// removed at run time; lookups take no lock.
///
/// Adding or removing an issuer costs O(log n) in the number of issuers (a persistent map:
/// a change copies one path of the map, never the whole map), so loading n issuers costs
/// O(n log n).
#[derive(Clone)]
pub struct Issuers {
    /// Exact issuers. A persistent map (O(1) clone, O(log n) insert and remove) swapped whole:
    /// readers load it without a lock, writers publish a changed copy that shares all but one
    /// path with the one it replaces.
    verifiers: Arc<ArcSwap<IssuerMap>>,
    /// Verifiers with an issuer template, tried in order after an exact match fails.
    templates: Arc<ArcSwap<Vec<Verifier>>>,
    resolver: Option<Resolution>,
    /// The resolver's bounds, kept apart so that they may be set before or after it.
    limits: Limits,
    near: Option<KeySetTier>,
    max_token_bytes: usize,
    /// The `issuer` metrics label of resolved verifiers; `None`: each its own issuer.
    metrics_label: Option<Arc<str>>,
}

/// The exact issuers' verifiers. Keys are `Arc<str>` so that copying a node of the map on a
/// change clones pointers, not strings.
type IssuerMap = imbl::HashMap<Arc<str>, Verifier>;

/// Issuers resolved on first sight, and those refused.
#[derive(Clone)]
struct Resolution {
    resolver: Arc<dyn IssuerResolver>,
    resolved: moka::sync::Cache<Box<str>, Verifier>,
    refused: moka::sync::Cache<Box<str>, ()>,
    /// One resolution per issuer at a time, however many first tokens arrive together.
    flights: Arc<SingleFlight<Box<str>, Resolved>>,
    /// The longest one question to the resolver may take.
    timeout: Duration,
}

/// What asking the resolver about one issuer gave.
#[derive(Clone)]
enum Resolved {
    Accepted(Verifier),
    Refused,
    /// The resolver did not answer within its timeout: neither kept nor remembered as refused.
    TimedOut(Duration),
}

impl Resolution {
    fn new(resolver: Arc<dyn IssuerResolver>, limits: &Limits) -> Self {
        Self {
            resolver,
            resolved: moka::sync::Cache::builder()
                .max_capacity(limits.max_resolved)
                .time_to_idle(limits.resolved_idle)
                .build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(limits.max_refused)
                .time_to_live(limits.refused_ttl)
                .build(),
            flights: Arc::new(SingleFlight::new()),
            timeout: limits.resolve_timeout,
        }
    }
}

/// The bounds of a resolving registry.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_resolved: u64,
    resolved_idle: Duration,
    max_refused: u64,
    refused_ttl: Duration,
    resolve_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_resolved: DEFAULT_MAX_RESOLVED,
            resolved_idle: DEFAULT_RESOLVED_IDLE,
            max_refused: DEFAULT_MAX_REFUSED,
            refused_ttl: DEFAULT_REFUSED_TTL,
            resolve_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verifiers = self.verifiers.load();
        let mut issuers: Vec<&str> = verifiers.keys().map(AsRef::as_ref).collect();
        issuers.sort_unstable();
        let templates: Vec<String> = self
            .templates
            .load()
            .iter()
            .filter_map(|verifier| Some(verifier.issuer_template()?.as_str().to_owned()))
            .collect();
        f.debug_struct("Issuers")
            .field("issuers", &issuers)
            .field("templates", &templates)
            .field("resolver", &self.resolver.is_some())
            .finish()
    }
}

impl Default for Issuers {
    fn default() -> Self {
        Self::new()
    }
}

/// Just the issuer of a payload, borrowed when it can be.
#[derive(Deserialize)]
struct IssuerOnly<'a> {
    #[serde(borrow)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

impl Issuers {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            verifiers: Arc::new(ArcSwap::from_pointee(IssuerMap::new())),
            templates: Arc::new(ArcSwap::from_pointee(Vec::new())),
            resolver: None,
            limits: Limits::default(),
            near: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            metrics_label: Some(DEFAULT_RESOLVED_METRICS_LABEL.into()),
        }
    }

    /// An empty registry whose [`verifier_builder`](Self::verifier_builder) gives every verifier
    /// the same near tier, so that memory stays bounded by that tier with many issuers.
    pub fn with_near_tier(near: KeySetTier) -> Self {
        Self {
            near: Some(near),
            ..Self::new()
        }
    }

    /// Builds verifiers on first sight: a token whose `iss` no configured verifier accepts asks
    /// `resolver` (once, however many such tokens arrive at once). At most
    /// [`DEFAULT_MAX_RESOLVED`] resolved issuers are kept, each dropped after
    /// [`DEFAULT_RESOLVED_IDLE`] without a token; refusals are remembered for
    /// [`DEFAULT_REFUSED_TTL`], at most [`DEFAULT_MAX_REFUSED`] of them (see
    /// [`resolver_limits`](Self::resolver_limits)).
    ///
    /// Resolved verifiers share the registry's near tier: the one given to
    /// [`with_near_tier`](Self::with_near_tier), else one in-process tier made here (feature
    /// `memory`, on the system clock), so that each costs kilobytes rather than a tier of its
    /// own.
    #[must_use]
    pub fn resolver(mut self, resolver: impl IssuerResolver + 'static) -> Self {
        if self.near.is_none() {
            let clock: jwkstash_core::SharedClock = Arc::new(jwkstash_core::SystemClock);
            self.near = crate::verify::builder::default_cache(&clock).ok();
        }
        self.resolver = Some(Resolution::new(Arc::new(resolver), &self.limits));
        self
    }

    /// The bounds of the resolver: how many resolved issuers are kept and for how long without
    /// a token, and how many refused issuers are remembered and for how long. Before or after
    /// [`resolver`](Self::resolver).
    #[must_use]
    pub fn resolver_limits(
        mut self,
        max_resolved: u64,
        resolved_idle: Duration,
        max_refused: u64,
        refused_ttl: Duration,
    ) -> Self {
        self.limits = Limits {
            max_resolved,
            resolved_idle,
            max_refused,
            refused_ttl,
            ..self.limits
        };
        self.rebuild_resolution();
        self
    }

    /// The longest the resolver may take to answer for one issuer (default
    /// [`DEFAULT_FETCH_TIMEOUT`], 6 s), before or after [`resolver`](Self::resolver). A resolver
    /// that does not answer in time leaves the tokens that waited with
    /// [`KeysUnavailable`](crate::KeysUnavailable) (503), and the next token asks again: a
    /// hung resolver never holds callers forever.
    #[must_use]
    pub fn resolve_timeout(mut self, timeout: Duration) -> Self {
        self.limits.resolve_timeout = timeout.max(Duration::from_millis(1));
        self.rebuild_resolution();
        self
    }

    fn rebuild_resolution(&mut self) {
        let limits = self.limits;
        self.resolver = self
            .resolver
            .take()
            .map(|resolution| Resolution::new(resolution.resolver, &limits));
    }

    /// The longest token the registry routes, in bytes (default 16 KiB, like
    /// [`VerifierBuilder::max_token_bytes`]); longer ones are refused before any decoding. Each
    /// verifier still applies its own limit.
    #[must_use]
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes.max(1);
        self
    }

    /// The `issuer` label value of the metrics (feature `metrics`) of every verifier the
    /// resolver builds (default [`DEFAULT_RESOLVED_METRICS_LABEL`], `"resolved"`): their
    /// counters and fetch durations add up under it, so that any number of resolved issuers
    /// costs the series of one verifier (26), not 28 each. They record no key-set gauges
    /// (`jwkstash_key_set_fetched_at_seconds`, `jwkstash_key_set_age_seconds`), which cannot
    /// be summed: see [`health`](Self::health) for each issuer's keys. Each verifier's
    /// [`Verifier::stats`] stay its own; tracing names each issuer. Verifiers given to
    /// [`insert`](Self::insert) keep their own label (one per configured issuer or template).
    #[must_use]
    pub fn metrics_label(mut self, label: impl Into<String>) -> Self {
        self.metrics_label = Some(label.into().into());
        self
    }

    /// Opts in to one `issuer` label value per resolved issuer, as configured verifiers have:
    /// 28 series per issuer, up to the resolver's `max_resolved` issuers (280,000 series at the
    /// default 10,000). For exporters and budgets that can take that; the default shares one
    /// label (see [`metrics_label`](Self::metrics_label)).
    #[must_use]
    pub fn metrics_per_issuer(mut self) -> Self {
        self.metrics_label = None;
        self
    }

    /// A verifier builder with the registry's shared near tier (if any).
    pub fn verifier_builder(&self) -> VerifierBuilder {
        match &self.near {
            Some(near) => Verifier::builder().near_tier(Arc::clone(near)),
            None => Verifier::builder(),
        }
    }

    /// Adds (or replaces) the verifier of each of its issuers; a verifier with an issuer
    /// template also serves every issuer its template matches.
    pub fn insert(&self, verifier: Verifier) {
        if let Some(template) = verifier.issuer_template() {
            let pattern = template.as_str().to_owned();
            self.templates.rcu(|current| {
                let mut next: Vec<Verifier> = current
                    .iter()
                    .filter(|other| other.issuer_template().map(|t| t.as_str()) != Some(&pattern))
                    .cloned()
                    .collect();
                next.push(verifier.clone());
                next
            });
        }
        let issuers: Vec<Arc<str>> = verifier
            .issuers()
            .iter()
            .map(|issuer| issuer.as_str().into())
            .collect();
        self.verifiers.rcu(|current| {
            let mut next = IssuerMap::clone(current);
            for issuer in &issuers {
                next.insert(Arc::clone(issuer), verifier.clone());
            }
            next
        });
    }

    /// The health of every issuer's keys (see [`Verifier::health`]), sorted by issuer (a
    /// template verifier under its pattern): read from memory, no I/O.
    pub fn health(&self) -> Vec<(String, crate::KeyHealth)> {
        let mut health: Vec<(String, crate::KeyHealth)> = self
            .verifiers
            .load()
            .iter()
            .map(|(issuer, verifier)| (issuer.to_string(), verifier.health()))
            .collect();
        for verifier in self.templates.load().iter() {
            if let Some(template) = verifier.issuer_template() {
                health.push((template.as_str().to_owned(), verifier.health()));
            }
        }
        if let Some(resolution) = &self.resolver {
            for (issuer, verifier) in resolution.resolved.iter() {
                health.push((issuer.to_string(), verifier.health()));
            }
        }
        health.sort_by(|a, b| a.0.cmp(&b.0));
        health
    }

    /// Removes the verifier of `issuer` (under all its issuers, or a resolved one), returning it.
    pub fn remove(&self, issuer: &str) -> Option<Verifier> {
        if let Some(resolution) = &self.resolver
            && let Some(resolved) = resolution.resolved.remove(issuer)
        {
            return Some(resolved);
        }
        let removed = self.verifiers.load().get(issuer).cloned()?;
        self.verifiers.rcu(|current| {
            let mut next = IssuerMap::clone(current);
            for issuer in removed.issuers() {
                next.remove(issuer.as_str());
            }
            next
        });
        Some(removed)
    }

    /// Removes the verifier of the issuer template `pattern`, returning it.
    pub fn remove_template(&self, pattern: &str) -> Option<Verifier> {
        let removed = self
            .templates
            .load()
            .iter()
            .find(|verifier| verifier.issuer_template().map(|t| t.as_str()) == Some(pattern))
            .cloned()?;
        self.templates.rcu(|current| {
            current
                .iter()
                .filter(|other| other.issuer_template().map(|t| t.as_str()) != Some(pattern))
                .cloned()
                .collect::<Vec<_>>()
        });
        Some(removed)
    }

    /// The verifier that serves `issuer` now (configured, matched by a template, or resolved
    /// earlier), without resolving.
    pub fn get(&self, issuer: &str) -> Option<Verifier> {
        self.lookup(issuer).or_else(|| {
            let resolution = self.resolver.as_ref()?;
            resolution.resolved.get(issuer)
        })
    }

    /// How many verifiers serve: configured issuers, templates and resolved issuers.
    pub fn len(&self) -> usize {
        let resolved = self.resolver.as_ref().map_or(0, |resolution| {
            // moka counts lazily: settle evictions first, so the count respects the bound.
            resolution.resolved.run_pending_tasks();
            resolution.resolved.entry_count()
        });
        self.verifiers.load().len()
            + self.templates.load().len()
            + usize::try_from(resolved).unwrap_or(usize::MAX)
    }

    /// Whether no verifier serves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many refused issuers are remembered now (bounded by the resolver's limits).
    pub fn refused_count(&self) -> u64 {
        self.resolver.as_ref().map_or(0, |resolution| {
            resolution.refused.run_pending_tasks();
            resolution.refused.entry_count()
        })
    }

    /// Verifies `token` with the verifier of its `iss`.
    ///
    /// A token without `iss`, or whose `iss` no verifier accepts (nor the resolver), is refused
    /// ([`InvalidToken::UnknownIssuer`]) before any key lookup or network request.
    pub async fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, VerifyError> {
        let issuer = self.peek_issuer(token)?;
        let verifier = match self.lookup(&issuer) {
            Some(verifier) => verifier,
            None => self.resolve(issuer).await?,
        };
        verifier.verify(token).await
    }

    /// A configured verifier of `issuer`, or a template verifier that matches it.
    fn lookup(&self, issuer: &str) -> Option<Verifier> {
        if let Some(verifier) = self.verifiers.load().get(issuer) {
            return Some(verifier.clone());
        }
        self.templates
            .load()
            .iter()
            .find(|verifier| {
                verifier
                    .issuer_template()
                    .is_some_and(|template| template.matches(issuer))
            })
            .cloned()
    }

    /// The resolved verifier of `issuer`, asking the resolver once if needed.
    async fn resolve(&self, issuer: String) -> Result<Verifier, VerifyError> {
        let resolution = self.resolver.as_ref().ok_or(InvalidToken::UnknownIssuer)?;
        if issuer.len() > MAX_ISSUER_BYTES || resolution.refused.contains_key(issuer.as_str()) {
            return Err(InvalidToken::UnknownIssuer.into());
        }
        if let Some(verifier) = resolution.resolved.get(issuer.as_str()) {
            return Ok(verifier);
        }
        let key: Box<str> = issuer.into();
        let builder = self.verifier_builder().issuer(&*key);
        let Resolution {
            resolver,
            resolved,
            refused,
            timeout,
            ..
        } = resolution.clone();
        let name = key.clone();
        let label = self.metrics_label.clone();
        let outcome = resolution
            .flights
            .run(key, move || async move {
                // Resolved or refused while this caller looked: no second question.
                if let Some(verifier) = resolved.get(&name) {
                    return Resolved::Accepted(verifier);
                }
                if refused.contains_key(&name) {
                    return Resolved::Refused;
                }
                let Ok(answer) = tokio::time::timeout(timeout, resolver.resolve(&name, builder))
                    .await
                else {
                    tracing::warn!(?timeout, "the issuer resolver did not answer in time");
                    return Resolved::TimedOut(timeout);
                };
                let built = answer.map(|builder| {
                    crate::stats::shared_label(label.as_deref(), || builder.build())
                });
                match built {
                    Some(Ok(verifier)) => {
                        resolved.insert(name, verifier.clone());
                        Resolved::Accepted(verifier)
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "the resolver's settings for an issuer do not build");
                        refused.insert(name, ());
                        Resolved::Refused
                    }
                    None => {
                        refused.insert(name, ());
                        Resolved::Refused
                    }
                }
            })
            .await;
        match outcome {
            Ok(Resolved::Accepted(verifier)) => Ok(verifier),
            Ok(Resolved::TimedOut(after)) => {
                let cause = Arc::new(RefreshError::ResolverTimedOut { after });
                Err(KeysUnavailable::new(cause, Some(Duration::from_secs(1))).into())
            }
            Ok(Resolved::Refused) | Err(_) => Err(InvalidToken::UnknownIssuer.into()),
        }
    }

    fn peek_issuer(&self, token: &str) -> Result<String, InvalidToken> {
        if token.len() > self.max_token_bytes {
            return Err(InvalidToken::TooLarge {
                limit: self.max_token_bytes,
            });
        }
        let payload = token
            .split('.')
            .nth(1)
            .ok_or(InvalidToken::Malformed("not three segments"))?;
        let payload = decode_segment(payload)?;
        let claims: IssuerOnly<'_> = serde_json::from_slice(&payload)
            .map_err(|_| InvalidToken::Malformed("payload is not a valid JSON object"))?;
        claims
            .iss
            .map(std::borrow::Cow::into_owned)
            .ok_or(InvalidToken::UnknownIssuer)
    }
}
