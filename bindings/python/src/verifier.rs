//! `jwkstash.Verifier`: the Rust verifier behind a Python class.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::clock::PyManualClock;
use crate::convert::{self, json_to_py, seconds, token_text};
use crate::errors;
use crate::jwk::{self, Header, Missing};
use crate::runtime::{ProcessBound, ProcessRuntime};
use crate::rust_api::{
    Algorithm, DEFAULT_ALGORITHMS, FreshnessPolicy, ManualClock, RedisCache, Verifier,
    VerifierBuilder,
};

/// The settings a verifier is built from, kept to build it again in a forked child.
#[derive(Clone)]
struct Settings {
    jwks_url: Option<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    any_audience: bool,
    allow_http_loopback: bool,
    redis: Option<RedisSettings>,
    algorithms: Option<Vec<Algorithm>>,
    leeway: Option<Duration>,
    max_token_bytes: Option<usize>,
    require_typ: Option<String>,
    accept_future_iat: bool,
    max_token_lifetime: Option<Duration>,
    lease_ttl: Option<Duration>,
    verified_token_cache: Option<(u64, Duration)>,
    policy: FreshnessPolicy,
    /// A test's clock, for the verifier and its Redis tier.
    clock: Option<ManualClock>,
}

#[derive(Clone)]
struct RedisSettings {
    url: String,
    prefix: String,
    secret: Option<Vec<u8>>,
    previous_secret: Option<Vec<u8>>,
    insecure_unauthenticated: bool,
}

impl fmt::Debug for Settings {
    // Never the Redis URL (it may hold a password) nor the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("jwks_url", &self.jwks_url)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("redis", &self.redis.as_ref().map(|redis| &redis.prefix))
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Builds the Rust verifier (and its Redis tier) on `runtime`. Blocks up to a second while
    /// a Redis that is down is tried; call it without the GIL.
    fn build(&self, runtime: &ProcessRuntime) -> Result<Verifier, String> {
        let mut builder: VerifierBuilder = Verifier::builder();
        let mut issuers = self.issuers.iter();
        builder = match &self.jwks_url {
            Some(url) => builder.jwks_url(url.as_str()),
            // Discovery names the first issuer itself.
            None => match issuers.next() {
                Some(issuer) => builder.discover(issuer.as_str()),
                None => return Err("an issuer is required".into()),
            },
        };
        for issuer in issuers {
            builder = builder.issuer(issuer.as_str());
        }
        for audience in &self.audiences {
            builder = builder.audience(audience.as_str());
        }
        if self.any_audience {
            builder = builder.any_audience();
        }
        if self.allow_http_loopback {
            builder = builder.allow_http_loopback();
        }
        if let Some(algorithms) = &self.algorithms {
            builder = builder.algorithms(algorithms);
        }
        if let Some(leeway) = self.leeway {
            builder = builder.leeway(leeway);
        }
        if let Some(bytes) = self.max_token_bytes {
            builder = builder.max_token_bytes(bytes);
        }
        if let Some(typ) = &self.require_typ {
            builder = builder.require_typ(typ.as_str());
        }
        if let Some(max) = self.max_token_lifetime {
            builder = builder.max_token_lifetime(max);
        }
        if let Some(ttl) = self.lease_ttl {
            builder = builder.lease_ttl(ttl);
        }
        if let Some((capacity, ttl)) = self.verified_token_cache {
            builder = builder.cache_verified_tokens(capacity, ttl);
        }
        builder = builder
            .accept_future_iat(self.accept_future_iat)
            .policy(self.policy.clone());
        if let Some(clock) = &self.clock {
            builder = builder.clock(Arc::new(clock.clone()));
        }
        if let Some(redis) = &self.redis {
            let mut tier = RedisCache::builder()
                .url(redis.url.as_str())
                .prefix(redis.prefix.as_str());
            if let Some(secret) = &redis.secret {
                tier = tier.hmac_secret(secret.clone());
            }
            if let Some(previous) = &redis.previous_secret {
                tier = tier.previous_hmac_secret(previous.clone());
            }
            if redis.insecure_unauthenticated {
                tier = tier.insecure_unauthenticated();
            }
            if let Some(clock) = &self.clock {
                tier = tier.clock(Arc::new(clock.clone()));
            }
            let tier = runtime
                .block_on(tier.build())
                .ok_or_else(stopped)?
                .map_err(|error| errors::redis_settings(&error))?;
            builder = builder.shared_tier(Arc::new(tier));
        }
        let _context = runtime.enter();
        builder
            .build()
            .map_err(|error| errors::verifier_settings(&error))
    }
}

fn stopped() -> String {
    "the jwkstash runtime is not running in this process".into()
}

/// A verifier of this process, on this process's runtime.
type Live = ProcessBound<Verifier>;

/// Verifies JWTs of one issuer against its JWKS, through the same cache stack as the Rust
/// library (in-process tier, optional Redis tier shared with Rust and Python instances).
#[pyclass(module = "jwkstash._jwkstash", name = "Verifier", subclass, frozen)]
pub(crate) struct PyVerifier {
    settings: Settings,
    live: ArcSwap<Live>,
}

impl PyVerifier {
    /// The verifier of the calling process: built again (own runtime, own connections) the
    /// first time a forked child uses it.
    fn live(&self, py: Python<'_>) -> PyResult<arc_swap::Guard<Arc<Live>>> {
        let live = self.live.load();
        if live.is_current() {
            return Ok(live);
        }
        drop(live);
        let runtime = ProcessRuntime::current().map_err(|error| errors::runtime(&error))?;
        let verifier = py
            .detach(|| self.settings.build(&runtime))
            .map_err(|message| errors::configuration(py, message))?;
        let fresh = Arc::new(ProcessBound::new(runtime, verifier));
        // Two threads of a new child may both build; the first one stored wins.
        let previous = self.live.load_full();
        if previous.is_current() {
            return Ok(self.live.load());
        }
        self.live.store(fresh);
        Ok(self.live.load())
    }

    /// Runs `operation` on this process's verifier and runtime, without the GIL.
    fn run<T, F>(&self, py: Python<'_>, operation: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(&Verifier, &ProcessRuntime) -> Option<T> + Send,
    {
        let live = self.live(py)?;
        let live: &Live = &live;
        py.detach(|| {
            live.get()
                .and_then(|verifier| operation(verifier, live.runtime()))
        })
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err(stopped()))
    }
}

/// The algorithms jwkstash verifies, by name: `RS256, RS384, ...`.
fn default_algorithms() -> String {
    let names: Vec<&str> = DEFAULT_ALGORITHMS.iter().map(|alg| alg.as_str()).collect();
    names.join(", ")
}

/// A setter of [`FreshnessPolicy`] that takes a duration.
type PolicySetter = fn(FreshnessPolicy, Duration) -> FreshnessPolicy;

/// Strings given as one `str` or an iterable of them.
fn strings(value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    if value.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(text) = value.extract::<String>() {
        return Ok(vec![text]);
    }
    value
        .try_iter()?
        .map(|item| item.and_then(|item| item.extract::<String>()))
        .collect()
}

/// A secret given as `str` (UTF-8) or `bytes`.
fn secret(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    let Some(value) = value.filter(|value| !value.is_none()) else {
        return Ok(None);
    };
    if let Ok(text) = value.extract::<String>() {
        return Ok(Some(text.into_bytes()));
    }
    Ok(Some(value.extract::<Vec<u8>>()?))
}

fn optional_seconds(py: Python<'_>, name: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value.map(|value| seconds(py, name, value)).transpose()
}

#[pymethods]
impl PyVerifier {
    /// Builds a verifier; nothing is fetched yet (see `prefetch`).
    #[new]
    #[pyo3(signature = (
        jwks_url = None,
        *,
        issuer,
        audience = None,
        any_audience = false,
        redis_url = None,
        redis_prefix = "jwkstash".to_owned(),
        hmac_secret = None,
        previous_hmac_secret = None,
        insecure_unauthenticated_redis = false,
        allow_http_loopback = false,
        algorithms = None,
        leeway = None,
        max_token_bytes = None,
        require_typ = None,
        accept_future_iat = false,
        max_token_lifetime = None,
        lease_ttl = None,
        verified_token_cache = None,
        ttl = None,
        min_ttl = None,
        max_ttl = None,
        refresh_ahead = None,
        max_stale = None,
        unknown_kid_cooldown = None,
        unknown_kid_wait = None,
        negative_ttl = None,
        backoff_initial = None,
        backoff_max = None,
        min_refresh_interval = None,
        fetch_timeout = None,
        clock = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        jwks_url: Option<String>,
        issuer: &Bound<'_, PyAny>,
        audience: Option<&Bound<'_, PyAny>>,
        any_audience: bool,
        redis_url: Option<String>,
        redis_prefix: String,
        hmac_secret: Option<&Bound<'_, PyAny>>,
        previous_hmac_secret: Option<&Bound<'_, PyAny>>,
        insecure_unauthenticated_redis: bool,
        allow_http_loopback: bool,
        algorithms: Option<Vec<String>>,
        leeway: Option<f64>,
        max_token_bytes: Option<usize>,
        require_typ: Option<String>,
        accept_future_iat: bool,
        max_token_lifetime: Option<f64>,
        lease_ttl: Option<f64>,
        verified_token_cache: Option<(u64, f64)>,
        ttl: Option<f64>,
        min_ttl: Option<f64>,
        max_ttl: Option<f64>,
        refresh_ahead: Option<f64>,
        max_stale: Option<f64>,
        unknown_kid_cooldown: Option<f64>,
        unknown_kid_wait: Option<f64>,
        negative_ttl: Option<f64>,
        backoff_initial: Option<f64>,
        backoff_max: Option<f64>,
        min_refresh_interval: Option<f64>,
        fetch_timeout: Option<f64>,
        clock: Option<PyRef<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        if algorithms.as_ref().is_some_and(Vec::is_empty) {
            return Err(errors::configuration(
                py,
                format!(
                    "algorithms=[] allows no algorithm: leave it out for the defaults, or name \
                     some of {}",
                    default_algorithms()
                ),
            ));
        }
        let algorithms = algorithms
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        name.parse::<Algorithm>().map_err(|_| {
                            errors::configuration(
                                py,
                                format!(
                                    "{name:?} is not an algorithm jwkstash verifies ({})",
                                    default_algorithms()
                                ),
                            )
                        })
                    })
                    .collect::<PyResult<Vec<_>>>()
            })
            .transpose()?;
        let mut policy = FreshnessPolicy::default();
        let durations: [(&str, Option<f64>, PolicySetter); 12] = [
            ("ttl", ttl, FreshnessPolicy::ttl),
            ("min_ttl", min_ttl, FreshnessPolicy::min_ttl),
            ("max_ttl", max_ttl, FreshnessPolicy::max_ttl),
            (
                "refresh_ahead",
                refresh_ahead,
                FreshnessPolicy::refresh_ahead,
            ),
            ("max_stale", max_stale, FreshnessPolicy::max_stale),
            (
                "unknown_kid_cooldown",
                unknown_kid_cooldown,
                FreshnessPolicy::unknown_kid_cooldown,
            ),
            (
                "unknown_kid_wait",
                unknown_kid_wait,
                FreshnessPolicy::unknown_kid_wait,
            ),
            ("negative_ttl", negative_ttl, FreshnessPolicy::negative_ttl),
            (
                "backoff_initial",
                backoff_initial,
                FreshnessPolicy::backoff_initial,
            ),
            ("backoff_max", backoff_max, FreshnessPolicy::backoff_max),
            (
                "min_refresh_interval",
                min_refresh_interval,
                FreshnessPolicy::min_refresh_interval,
            ),
            (
                "fetch_timeout",
                fetch_timeout,
                FreshnessPolicy::fetch_timeout,
            ),
        ];
        for (name, value, set) in durations {
            if let Some(value) = value {
                policy = set(policy, seconds(py, name, value)?);
            }
        }
        let redis = match redis_url {
            Some(url) => Some(RedisSettings {
                url,
                prefix: redis_prefix,
                secret: secret(hmac_secret)?,
                previous_secret: secret(previous_hmac_secret)?,
                insecure_unauthenticated: insecure_unauthenticated_redis,
            }),
            None if hmac_secret.is_some_and(|secret| !secret.is_none()) => {
                return Err(errors::configuration(
                    py,
                    "hmac_secret authenticates the Redis tier: give redis_url too",
                ));
            }
            None => None,
        };
        let verified_token_cache = verified_token_cache
            .map(|(capacity, ttl)| {
                Ok::<_, PyErr>((capacity, seconds(py, "verified_token_cache ttl", ttl)?))
            })
            .transpose()?;
        let settings = Settings {
            jwks_url,
            issuers: strings(Some(issuer))?,
            audiences: strings(audience)?,
            any_audience,
            allow_http_loopback,
            redis,
            algorithms,
            leeway: optional_seconds(py, "leeway", leeway)?,
            max_token_bytes,
            require_typ,
            accept_future_iat,
            max_token_lifetime: optional_seconds(py, "max_token_lifetime", max_token_lifetime)?,
            lease_ttl: optional_seconds(py, "lease_ttl", lease_ttl)?,
            verified_token_cache,
            policy,
            clock: clock.map(|clock| clock.clock.clone()),
        };
        if settings.issuers.is_empty() {
            return Err(errors::configuration(py, "an issuer is required"));
        }
        let runtime = ProcessRuntime::current().map_err(|error| errors::runtime(&error))?;
        let verifier = py
            .detach(|| settings.build(&runtime))
            .map_err(|message| errors::configuration(py, message))?;
        Ok(Self {
            settings,
            live: ArcSwap::from_pointee(ProcessBound::new(runtime, verifier)),
        })
    }

    /// Verifies `token` (str or bytes) and returns its claims as a dict.
    ///
    /// Raises `InvalidToken` (answer 401; `.code` names the rule) or `KeysUnavailable` (answer
    /// 503; `.retry_after` in seconds). Runs without the GIL.
    fn verify<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let token = token_text(py, token)?;
        let outcome = self.run(py, |verifier, runtime| {
            runtime.block_on(verifier.verify::<Value>(token))
        })?;
        match outcome {
            Ok(claims) => json_to_py(py, &claims),
            Err(error) => Err(errors::verify_error(py, &error)),
        }
    }

    /// Loads the key set now (from the shared tier or the provider), so that the first request
    /// does not wait. Raises `KeysUnavailable`.
    fn prefetch(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |verifier, runtime| {
            runtime.block_on(verifier.prefetch())
        })?
        .map_err(|error| errors::keys_unavailable(py, &error))
    }

    /// Fetches the key set now, whatever its freshness (an emergency rotation); with Redis the
    /// whole fleet takes the new set from the invalidation. At most one fetch per
    /// `min_refresh_interval` (fleet-wide with Redis). Returns `{"fetched": bool, "kids": [...]}`.
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let refreshed = self
            .run(py, |verifier, runtime| runtime.block_on(verifier.refresh()))?
            .map_err(|error| errors::keys_unavailable(py, &error))?;
        let dict = PyDict::new(py);
        dict.set_item("fetched", refreshed.fetched)?;
        let kids: Vec<Option<&str>> = refreshed
            .key_set
            .keys()
            .iter()
            .map(|key| key.kid())
            .collect();
        dict.set_item("kids", PyList::new(py, kids)?)?;
        Ok(dict)
    }

    /// Drops the cached key set (this instance's and the shared tier's entry); prefer
    /// `refresh()`, which replaces it without a gap.
    fn invalidate(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |verifier, runtime| {
            runtime.block_on(verifier.invalidate())
        })?
        .map_err(|error| pyo3::exceptions::PyRuntimeError::new_err(error.to_string()))
    }

    /// The counters of this process's verifier, as a dict (a forked child starts from zero).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.run(py, |verifier, _| Some(verifier.stats()))?;
        convert::stats(py, &stats)
    }

    /// The state of the keys, read from memory: `{"state": "fresh" | "stale" | "unavailable",
    /// "ready": bool, ...}`, for a readiness probe.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let health = self.run(py, |verifier, _| Some(verifier.health()))?;
        convert::health(py, &health)
    }

    /// The JWKS document of the current key set, as the provider published it (loads it if
    /// needed). Raises `KeysUnavailable`.
    fn jwks(&self, py: Python<'_>) -> PyResult<String> {
        let set = self
            .run(py, |verifier, runtime| runtime.block_on(verifier.key_set()))?
            .map_err(|error| errors::keys_unavailable(py, &error))?;
        Ok(String::from_utf8_lossy(set.raw()).into_owned())
    }

    /// The issuers whose tokens this verifier accepts.
    #[getter]
    fn issuers(&self) -> Vec<String> {
        self.settings.issuers.clone()
    }

    /// The pid of the process whose runtime this verifier runs on now (after a fork, the
    /// child's once it has used the verifier).
    #[getter]
    fn _runtime_pid(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.live(py)?.runtime().pid())
    }

    /// `(key set fingerprint, key thumbprint)` of the key that signs `token`, refetching the set
    /// for an unknown `kid` under the verifier's rules (one refetch per cooldown, fleet-wide
    /// with Redis; a token its claims would refuse spends none). For
    /// `get_signing_key_from_jwt`.
    fn _signing_key_id<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let token = token_text(py, token)?;
        let header = Header::read(token).map_err(|why| {
            errors::invalid_token(py, &crate::rust_api::InvalidToken::Malformed(why))
        })?;
        let found = self.run(py, |verifier, runtime| {
            runtime.block_on(async {
                let set = verifier.key_set().await?;
                match jwk::find(&set, &header) {
                    Err(Missing::Absent) => {}
                    found => return Ok(found.map(|key| (set.fingerprint(), key.thumbprint()))),
                }
                // The verifier decides whether the provider is asked again; what its answer
                // says about the token is PyJWT's to judge.
                if let Err(crate::rust_api::VerifyError::KeysUnavailable(unavailable)) =
                    verifier.verify::<IgnoredAny>(token).await
                {
                    return Err(unavailable);
                }
                let set = verifier.key_set().await?;
                Ok(jwk::find(&set, &header).map(|key| (set.fingerprint(), key.thumbprint())))
            })
        })?;
        match found {
            Ok(Ok((fingerprint, thumbprint))) => (fingerprint, thumbprint).into_pyobject(py),
            Ok(Err(missing)) => Err(errors::signing_key_not_found(
                py,
                format!(
                    "Unable to find a signing key that matches: {:?}",
                    header.kid().unwrap_or_default()
                ),
                missing.code(),
            )),
            Err(unavailable) => Err(errors::keys_unavailable(py, &unavailable)),
        }
    }

    /// The published JWK of the key `(fingerprint, thumbprint)`, or None if the current set is
    /// another one now.
    fn _published_jwk(
        &self,
        py: Python<'_>,
        fingerprint: u64,
        thumbprint: u64,
    ) -> PyResult<Option<String>> {
        let set = self
            .run(py, |verifier, runtime| runtime.block_on(verifier.key_set()))?
            .map_err(|error| errors::keys_unavailable(py, &error))?;
        if set.fingerprint() != fingerprint {
            return Ok(None);
        }
        Ok(py.detach(|| jwk::published(&set, thumbprint)))
    }

    fn __repr__(&self) -> String {
        format!(
            "Verifier(issuer={:?}, audience={:?}, redis={})",
            self.settings.issuers,
            self.settings.audiences,
            self.settings.redis.is_some()
        )
    }
}
