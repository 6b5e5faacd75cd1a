//! Many issuers in one process: `iss` selects the verifier, keys stay bound to their issuer,
//! unknown issuers cost no request, and issuers come and go at run time.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::common::*;
use jwkstash_core::{ManualClock, MockKeySource};
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{InvalidToken, Issuers, Verifier, VerifyError};
use serde_json::{Value, json};

fn source_for(key: &TestKey, url: &str) -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(url.to_owned());
    let answer = modified(&[key]);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    source
}

fn verifier(
    issuers: &Issuers,
    issuer: &str,
    audience: &str,
    key: &TestKey,
    clock: &ManualClock,
) -> Verifier {
    issuers
        .verifier_builder()
        .key_source(source_for(key, &format!("{issuer}jwks")))
        .issuer(issuer)
        .audience(audience)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn token(key: &TestKey, issuer: &str, audience: &str, clock: &ManualClock) -> String {
    let mut claims = claims(clock);
    claims["iss"] = json!(issuer);
    claims["aud"] = json!(audience);
    key.sign(&claims)
}

fn refusal(outcome: Result<Value, VerifyError>) -> InvalidToken {
    match outcome {
        Err(VerifyError::InvalidToken(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const A: &str = "https://a.test/";
const B: &str = "https://b.test/";

#[tokio::test]
async fn the_same_kid_under_two_issuers_stays_apart() {
    let clock = ManualClock::default();
    let shared: jwkstash_jwks::KeySetTier = Arc::new(
        jwkstash_memory::MemoryCache::builder()
            .clock(Arc::new(clock.clone()))
            .build(),
    );
    let issuers = Issuers::with_near_tier(shared);
    let (key_a, key_b) = (TestKey::ec_p256("same-kid"), TestKey::ec_p256("same-kid"));
    issuers.insert(verifier(&issuers, A, "api-a", &key_a, &clock));
    issuers.insert(verifier(&issuers, B, "api-b", &key_b, &clock));
    issuers
        .verify::<Value>(&token(&key_a, A, "api-a", &clock))
        .await
        .unwrap();
    issuers
        .verify::<Value>(&token(&key_b, B, "api-b", &clock))
        .await
        .unwrap();
    // iss = B signed with A's key under the shared kid: B's key does not verify it.
    assert_eq!(
        refusal(issuers.verify(&token(&key_a, B, "api-b", &clock)).await),
        InvalidToken::BadSignature
    );
    // Per-issuer audience: A's audience is not B's.
    assert_eq!(
        refusal(issuers.verify(&token(&key_b, B, "api-a", &clock)).await),
        InvalidToken::InvalidAudience
    );
}

#[tokio::test]
async fn an_unknown_issuer_costs_no_request() {
    let clock = ManualClock::default();
    let issuers = Issuers::new();
    let key = TestKey::ed25519("k1");
    let silent = issuers
        .verifier_builder()
        .key_source(silent_source())
        .issuer(A)
        .audience("api-a")
        .build()
        .unwrap();
    issuers.insert(silent);
    for iss in [
        json!("https://c.test/"),
        json!(format!("{A}x")),
        json!(null),
        json!(7),
    ] {
        let mut claims = claims(&clock);
        claims["iss"] = iss.clone();
        let reason = refusal(issuers.verify(&key.sign(&claims)).await);
        assert!(
            matches!(
                reason,
                InvalidToken::UnknownIssuer | InvalidToken::Malformed(_)
            ),
            "{iss}: {reason:?}"
        );
    }
    let mut no_iss = claims(&clock);
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        refusal(issuers.verify(&key.sign(&no_iss)).await),
        InvalidToken::UnknownIssuer
    );
    assert!(matches!(
        refusal(issuers.verify("garbage").await),
        InvalidToken::Malformed(_)
    ));
}

#[tokio::test]
async fn issuers_come_and_go_at_run_time() {
    let clock = ManualClock::default();
    let issuers = Issuers::new();
    let key = TestKey::ed25519("k1");
    let token = token(&key, A, "api-a", &clock);
    assert_eq!(
        refusal(issuers.verify(&token).await),
        InvalidToken::UnknownIssuer
    );
    issuers.insert(verifier(&issuers, A, "api-a", &key, &clock));
    assert_eq!(issuers.len(), 1);
    issuers.verify::<Value>(&token).await.unwrap();
    let removed = issuers.remove(A).unwrap();
    assert_eq!(removed.issuers(), [A.to_owned()]);
    assert!(issuers.is_empty());
    assert_eq!(
        refusal(issuers.verify(&token).await),
        InvalidToken::UnknownIssuer
    );
    // Clones share the registry.
    let clone = issuers.clone();
    clone.insert(verifier(&issuers, A, "api-a", &key, &clock));
    issuers.verify::<Value>(&token).await.unwrap();
}

#[tokio::test]
async fn a_verifier_with_several_spellings_of_its_issuer_is_found_under_each() {
    let clock = ManualClock::default();
    let issuers = Issuers::new();
    let key = TestKey::ed25519("k1");
    let google_like = issuers
        .verifier_builder()
        .key_source(source_for(&key, "https://keys.test/jwks"))
        .issuer("https://accounts.test")
        .issuer("accounts.test")
        .audience("client-id")
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    issuers.insert(google_like);
    assert_eq!(issuers.len(), 2);
    issuers
        .verify::<Value>(&token(&key, "accounts.test", "client-id", &clock))
        .await
        .unwrap();
    issuers
        .verify::<Value>(&token(&key, "https://accounts.test", "client-id", &clock))
        .await
        .unwrap();
    issuers.remove("accounts.test");
    assert!(issuers.is_empty());
}

/// A resolver that never answers (it awaits a tenant database that hangs).
struct Hangs(Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl jwkstash_jwks::IssuerResolver for Hangs {
    async fn resolve(
        &self,
        _: &str,
        _: jwkstash_jwks::VerifierBuilder,
    ) -> Option<jwkstash_jwks::VerifierBuilder> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending().await
    }
}

/// The tokens of an issuer whose resolver hangs wait `resolve_timeout` (asked once for all of
/// them), get 503, and the next token asks again: the issuer is neither kept nor refused.
#[tokio::test(start_paused = true)]
async fn a_resolver_that_never_answers_costs_the_resolve_timeout_and_is_asked_again() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let timeout = std::time::Duration::from_secs(3);
    let issuers = Issuers::new()
        .resolve_timeout(timeout)
        .resolver(Hangs(Arc::clone(&calls)));
    let key = TestKey::ed25519("k1");
    let clock = ManualClock::default();
    let mut claims = claims(&clock);
    claims["iss"] = json!("https://new-tenant.example/");
    let token = key.sign(&claims);
    let started = tokio::time::Instant::now();
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (issuers, token) = (issuers.clone(), token.clone());
            tokio::spawn(async move { issuers.verify::<Value>(&token).await })
        })
        .collect();
    for outcome in waiting {
        match outcome.await.unwrap() {
            Err(VerifyError::KeysUnavailable(unavailable)) => assert!(
                matches!(
                    unavailable.cause(),
                    jwkstash_jwks::RefreshError::ResolverTimedOut { after } if *after == timeout
                ),
                "{unavailable:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started.elapsed(), timeout);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(issuers.refused_count(), 0);
    assert!(issuers.verify::<Value>(&token).await.is_err());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
