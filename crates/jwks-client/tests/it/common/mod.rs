//! Helpers shared by the jwks-client tests: a counted, optionally slow key source around a
//! mockall mock, and tokens minted against an injected clock.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use jwkstash_core::{
    Clock, FetchError, Fetched, KeySource, MockKeySource, SharedClock, Validators,
};
use jwkstash_jwks::testkit::{TestKey, jwks};
use jwkstash_jwks::{Verifier, VerifierBuilder};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.test/";
pub const AUDIENCE: &str = "api";
pub const JWKS_URL: &str = "https://idp.test/.well-known/jwks.json";

/// A 200 answer carrying the public JWKS of `keys`.
pub fn modified(keys: &[&TestKey]) -> Fetched {
    raw(jwks(keys).to_string())
}

/// A 200 answer carrying `body` as it is, valid JWKS or not.
pub fn raw(body: impl Into<Bytes>) -> Fetched {
    Fetched::Modified {
        body: body.into(),
        etag: None,
        max_age: None,
    }
}

/// A mock that answers every fetch with the document `body`, however often it is asked.
pub fn serving(body: impl Into<Bytes>) -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = raw(body);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    source
}

/// A mock that answers these JWKS documents in order, each exactly once (mockall fails the
/// test on one fetch too many, and on too few when the mock is dropped).
pub fn documents(bodies: &[Value]) -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let mut order = mockall::Sequence::new();
    for body in bodies {
        let answer = raw(body.to_string());
        source
            .expect_fetch()
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_| Ok(answer.clone()));
    }
    source
}

/// A mock whose `fetch` answers with each of `answers` in turn (the last one repeats), counting
/// calls in `calls`.
pub fn scripted_source(
    answers: Vec<Result<Fetched, ()>>,
    calls: Arc<AtomicUsize>,
) -> MockKeySource {
    scripted_source_expecting(answers, calls, 0..)
}

/// [`scripted_source`] that must be asked exactly `times` times (or a number in a range) over
/// its life: mockall fails the test by itself on one call too many, and on too few when the
/// mock is dropped.
pub fn scripted_source_expecting(
    answers: Vec<Result<Fetched, ()>>,
    calls: Arc<AtomicUsize>,
    times: impl Into<mockall::TimesRange>,
) -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answers = Mutex::new(answers);
    source.expect_fetch().times(times).returning(move |_| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let answers = answers.lock().unwrap();
        let answer = answers
            .get(n)
            .or(answers.last())
            .expect("at least one answer");
        answer.clone().map_err(|()| FetchError::Status(503))
    });
    source
}

/// A verifier builder for [`ISSUER`] and [`AUDIENCE`] over `source`, reading `clock`.
pub fn builder(source: impl KeySource + 'static, clock: SharedClock) -> VerifierBuilder {
    Verifier::builder()
        .key_source(source)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .clock(clock)
}

/// A mock that must be asked for keys exactly once (mockall fails the test on a second call
/// by itself, and on none when the mock is dropped).
pub fn once_source(keys: &[&TestKey]) -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let body = modified(keys);
    source
        .expect_fetch()
        .times(1)
        .returning(move |_| Ok(body.clone()));
    source
}

/// A mock that must never be asked for keys.
pub fn silent_source() -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    source.expect_fetch().never();
    source
}

/// Wraps a source so that every fetch takes `delay` (on tokio's clock) first.
pub struct Slow<S> {
    pub inner: S,
    pub delay: Duration,
}

#[async_trait]
impl<S: KeySource> KeySource for Slow<S> {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn fetch(&self, validators: &Validators) -> Result<Fetched, FetchError> {
        tokio::time::sleep(self.delay).await;
        self.inner.fetch(validators).await
    }
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// Valid claims at the clock's now, for two hours.
pub fn claims(clock: &dyn Clock) -> Value {
    let now = seconds(clock.now());
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 7200 })
}

/// A valid token signed by `key`.
pub fn token(key: &TestKey, clock: &dyn Clock) -> String {
    key.sign(&claims(clock))
}

/// A token with a random `kid` (signed by `key`, which does not matter: the kid is unknown).
pub fn token_with_random_kid(key: &TestKey, clock: &dyn Clock) -> String {
    let header = json!({ "alg": key.alg(), "kid": format!("random-{:016x}", fastrand::u64(..)) });
    key.sign_with_header(&header, &claims(clock))
}

/// A fresh RSA-2048 key per call (generation costs tens of milliseconds in debug builds: call
/// it once per test, not per token).
pub fn rsa_key(kid: &str) -> TestKey {
    TestKey::rsa(kid)
}

/// Collects every log line written while a subscriber writing to it is installed.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The id of the `n`th test tenant (with a letter, so that case matters).
pub fn tenant(n: usize) -> String {
    format!("0000000a-0000-4000-8000-{n:012}")
}

/// A token of issuer `iss` claiming tenant `tid`, for the multi-tenant audience, valid for an
/// hour by the system clock.
pub fn tenant_token(key: &TestKey, iss: &str, tid: &str) -> String {
    let now = seconds(SystemTime::now());
    key.sign(&json!({
        "iss": iss, "tid": tid, "aud": TENANT_AUDIENCE, "sub": "user", "iat": now, "exp": now + 3600,
    }))
}

/// The audience of [`tenant_token`]s.
pub const TENANT_AUDIENCE: &str = "api://multi-tenant-app";

/// The in-process shared tier, counting its subscriptions, and with lease renewals that never
/// succeed when `loses_leases` (fault injection: a holder loses its lease at the first
/// heartbeat, as one whose renewals stopped reaching the tier would).
#[derive(Debug, Clone)]
pub struct TestTier {
    pub inner: jwkstash_memory::MemoryCache<Arc<jwkstash_jwks::KeySet>>,
    pub loses_leases: bool,
    pub subscriptions: Arc<AtomicUsize>,
}

impl TestTier {
    pub fn new(inner: jwkstash_memory::MemoryCache<Arc<jwkstash_jwks::KeySet>>) -> Self {
        Self {
            inner,
            loses_leases: false,
            subscriptions: Arc::default(),
        }
    }

    pub fn losing_leases(inner: jwkstash_memory::MemoryCache<Arc<jwkstash_jwks::KeySet>>) -> Self {
        Self {
            loses_leases: true,
            ..Self::new(inner)
        }
    }
}

type KeySetEntry = jwkstash_core::Entry<Arc<jwkstash_jwks::KeySet>>;

#[async_trait]
impl jwkstash_core::Cache<Arc<jwkstash_jwks::KeySet>> for TestTier {
    async fn get(&self, key: &str) -> Result<Option<KeySetEntry>, jwkstash_core::CacheError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, entry: KeySetEntry) -> Result<(), jwkstash_core::CacheError> {
        self.inner.put(key, entry).await
    }

    async fn remove(&self, key: &str) -> Result<(), jwkstash_core::CacheError> {
        self.inner.remove(key).await
    }

    fn name(&self) -> &'static str {
        "loses-leases"
    }
}

#[async_trait]
impl jwkstash_core::Lease for TestTier {
    async fn acquire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<jwkstash_core::LeaseToken>, jwkstash_core::CacheError> {
        self.inner.acquire(key, ttl).await
    }

    async fn release(
        &self,
        key: &str,
        token: &jwkstash_core::LeaseToken,
    ) -> Result<(), jwkstash_core::CacheError> {
        self.inner.release(key, token).await
    }

    async fn renew(
        &self,
        key: &str,
        token: &jwkstash_core::LeaseToken,
        ttl: Duration,
    ) -> Result<bool, jwkstash_core::CacheError> {
        if self.loses_leases {
            return Ok(false);
        }
        self.inner.renew(key, token, ttl).await
    }

    async fn claim_period(
        &self,
        key: &str,
        slot: &str,
        now: SystemTime,
        period: Duration,
    ) -> Result<bool, jwkstash_core::CacheError> {
        self.inner.claim_period(key, slot, now, period).await
    }

    async fn last_claimed(
        &self,
        key: &str,
        slot: &str,
    ) -> Result<Option<SystemTime>, jwkstash_core::CacheError> {
        self.inner.last_claimed(key, slot).await
    }
}

#[async_trait]
impl jwkstash_core::Invalidations for TestTier {
    async fn publish(
        &self,
        invalidation: jwkstash_core::Invalidation,
    ) -> Result<(), jwkstash_core::CacheError> {
        self.inner.publish(invalidation).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<jwkstash_core::Invalidation> {
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        self.inner.subscribe()
    }
}

#[async_trait]
impl jwkstash_core::Directory for TestTier {
    async fn announce(&self, key: &str, about: &str) -> Result<(), jwkstash_core::CacheError> {
        self.inner.announce(key, about).await
    }

    async fn announced(&self) -> Result<Vec<(String, String)>, jwkstash_core::CacheError> {
        self.inner.announced().await
    }
}
