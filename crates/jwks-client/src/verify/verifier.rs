//! [`Verifier`]: `verify::<C>(token)` against one issuer's key set, through the cache stack.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jwkstash_core::SharedClock;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::jose::alg::AlgorithmSet;
use crate::jose::claims::{ClaimRules, Registered};
use crate::jose::error::InvalidToken;
use crate::jose::keyset::{KeySet, VerifyingKey};
use crate::jose::template::IssuerTemplate;
use crate::jose::token::{Token, decode_segment};
use crate::stats::{Counters, Stats};
use crate::store::KeyStore;
use crate::store::error::KeysUnavailable;
use crate::store::kid_query::KidQuery;
use crate::verify::error::VerifyError;
use crate::verify::verified::{Checked, TokenHash, VerifiedTokens};

/// Tokens longer than this are refused before any decoding (configurable).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Default lease TTL: how long a fleet takes to notice that its fetching instance died. The
/// holder renews the lease while it fetches, so the TTL does not bound the fetch.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_millis(1500);

/// Verifies JWTs of one issuer against its JWKS, calling the provider as rarely as the
/// [`FreshnessPolicy`](crate::FreshnessPolicy) allows. Cheap to clone; clones share keys and counters.
///
/// A verification runs the cheap checks first (size, shape, header, algorithm allow-list,
/// `crit`, `kid`), then finds the key in the cached set (refetching for an unknown `kid` at most
/// once per cooldown), then checks the signature, and only then the claims (`exp` required,
/// `nbf`, `iss` exact, `aud`, leeway).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

/// What a verifier is made of; put together by [`VerifierBuilder::build`](crate::VerifierBuilder::build).
pub(crate) struct Inner {
    pub(crate) store: Arc<KeyStore>,
    /// The issuer (or issuer template) named in logs and metrics.
    pub(crate) label: Box<str>,
    pub(crate) verified: Option<VerifiedTokens>,
    pub(crate) rules: ClaimRules,
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) max_token_bytes: usize,
    pub(crate) required_typ: Option<Box<str>>,
    pub(crate) clock: SharedClock,
    pub(crate) counters: Arc<Counters>,
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
    pub(crate) fn from_parts(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
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
    /// [`min_refresh_interval`](crate::FreshnessPolicy::min_refresh_interval) (default 5 s); calls
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
    /// subscriber that falls behind receives `RecvError::Lagged` and loses the oldest events,
    /// and must keep receiving after it: [`KeyEvents::from`](crate::KeyEvents) does (a loop on
    /// `recv()` that stops at its first error stops for good at the first lag). Events are sent
    /// only while someone subscribes.
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
        // (`failed`: the thumbprint of the key under the kid that failed the signature.)
        let (id, failed) = match (attempt, &token.key_id) {
            (Attempt::Checked(outcome), _) => return Ok(outcome?),
            (Attempt::UnknownKid, Some(id)) => (id, None),
            (Attempt::BadSignature { thumbprint }, Some(id)) => (id, Some(thumbprint)),
            (Attempt::UnknownKid, None) => return Err(InvalidToken::UnknownKid.into()),
            (Attempt::BadSignature { .. }, None) => return Err(InvalidToken::BadSignature.into()),
        };
        let refused = match failed {
            None => InvalidToken::UnknownKid,
            Some(_) => InvalidToken::BadSignature,
        };
        // A token that no key could make valid (expired, another issuer or audience) spends no
        // refetch, and learns nothing of the rule it broke.
        let Ok(iat) = self.unverified_issued_at(&token) else {
            return Err(refused.into());
        };
        let query = match failed {
            // The leeway is how far the provider's clock may run behind ours.
            None => KidQuery::unknown(id, &entry.value, iat, inner.rules.leeway, now),
            Some(thumbprint) => KidQuery::failed_signature(id, thumbprint),
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

    /// The token's `iat`, if its claims, read before any signature check, could pass the claim
    /// rules; an error if no key could make the token valid. Only tokens whose key is unknown
    /// (or failed) reach this, before they may cost a refetch.
    fn unverified_issued_at(&self, token: &Token<'_>) -> Result<Option<u64>, InvalidToken> {
        let payload = decode_segment(token.payload)?;
        let rules = &self.inner.rules;
        let bound = rules.template.as_ref().map(IssuerTemplate::claim);
        let claims = Registered::parse_with(&payload, bound)?;
        rules.check(&claims, self.inner.clock.now(), None)?;
        Ok(claims.issued_at())
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
        if !key.verify_signature(token.alg, token.message.as_bytes(), token.signature) {
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
