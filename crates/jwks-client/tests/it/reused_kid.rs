//! A provider that reuses a `kid` for a new key: the signature fails under the known kid, the
//! verifier refetches at most once per cooldown (the unknown-kid budget), and accepts the token
//! if the new set verifies it. Upstream calls are mockall expectations, on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{MockKeySource, TokioClock};
use jwkstash_jwks::testkit::{TestKey, jwks};
use jwkstash_jwks::{FreshnessPolicy, InvalidToken, Verifier, VerifyError};
use serde_json::Value;
use tokio::time::{Instant, advance};

const COOLDOWN: Duration = Duration::from_secs(30);

/// A source that answers `sets` in order, each exactly once: one more fetch fails the test.
fn sequence(sets: &[&[&TestKey]]) -> MockKeySource {
    let documents_of_sets: Vec<Value> = sets.iter().map(|keys| jwks(keys)).collect();
    documents(&documents_of_sets)
}

fn verifier(source: impl jwkstash_core::KeySource + 'static, clock: &TokioClock) -> Verifier {
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

fn is_bad_signature(outcome: &Result<Value, VerifyError>) -> bool {
    matches!(
        outcome,
        Err(VerifyError::InvalidToken(InvalidToken::BadSignature))
    )
}

#[tokio::test(start_paused = true)]
async fn a_kid_reused_for_a_new_key_is_refetched_once_and_its_tokens_accepted() {
    let (old, new) = (TestKey::ec_p256("k1"), TestKey::ec_p256("k1"));
    let clock = TokioClock::new();
    let verifier = verifier(sequence(&[&[&old], &[&new]]), &clock);
    verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap();

    // The provider now signs with a new key under the same kid.
    let claims: Value = verifier.verify(&token(&new, &clock)).await.unwrap();
    assert_eq!(claims["sub"], "user-1");
    let stats = verifier.stats();
    assert_eq!(
        (stats.fetches, stats.fetches_reused_kid),
        (2, 1),
        "{stats:?}"
    );
    // The new key is now the one verified with: no further fetch (the mock allows none).
    verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap();
    let outcome = verifier.verify::<Value>(&token(&old, &clock)).await;
    assert!(is_bad_signature(&outcome), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_bad_signatures_under_a_real_kid_costs_one_fetch_and_valid_tokens_never_wait() {
    let (key, forger) = (TestKey::ed25519("k1"), TestKey::ed25519("k1"));
    let other = TestKey::ed25519("k2");
    let clock = TokioClock::new();
    // Exactly three fetches: the warm-up, one refetch for the flood, and one more after the
    // cooldown. A fourth fails the test.
    let source = Slow {
        inner: sequence(&[&[&key, &other], &[&key, &other], &[&key, &other]]),
        delay: Duration::from_millis(500),
    };
    let verifier = verifier(source, &clock);
    let valid = token(&key, &clock);
    verifier.verify::<Value>(&valid).await.unwrap();
    advance(Duration::from_secs(2)).await;

    let forged = token(&forger, &clock);
    let flood: Vec<_> = (0..1000)
        .map(|_| {
            let (verifier, forged) = (verifier.clone(), forged.clone());
            tokio::spawn(async move { verifier.verify::<Value>(&forged).await })
        })
        .collect();
    tokio::task::yield_now().await;
    // The refetch is in flight (500 ms on the paused clock): valid tokens do not wait for it.
    let started = Instant::now();
    for _ in 0..50 {
        verifier.verify::<Value>(&valid).await.unwrap();
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "a valid token waited");
    for task in flood {
        let outcome = task.await.unwrap();
        assert!(is_bad_signature(&outcome), "{outcome:?}");
    }
    let stats = verifier.stats();
    assert_eq!(
        (stats.fetches, stats.fetches_reused_kid),
        (2, 1),
        "{stats:?}"
    );

    // Within the cooldown more forgeries, under k1 or k2, cost nothing and answer at once.
    advance(Duration::from_secs(10)).await;
    let forged_k2 = token(&TestKey::ed25519("k2"), &clock);
    let started = Instant::now();
    for forgery in [&forged, &forged_k2].repeat(50) {
        let outcome = verifier.verify::<Value>(forgery).await;
        assert!(is_bad_signature(&outcome), "{outcome:?}");
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(verifier.stats().fetches, 2);

    // The next cooldown allows one more refetch, and only one: a forgery is never remembered
    // as settled, so a genuine reuse of the kid is seen within one cooldown.
    advance(COOLDOWN).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (verifier, forged) = (verifier.clone(), forged.clone());
            tokio::spawn(async move { verifier.verify::<Value>(&forged).await })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.unwrap();
        assert!(is_bad_signature(&outcome), "{outcome:?}");
    }
    assert_eq!(verifier.stats().fetches, 3);
}

#[tokio::test(start_paused = true)]
async fn a_bad_signature_while_the_source_backs_off_is_refused_at_once() {
    let (key, forger) = (TestKey::ec_p256("k1"), TestKey::ec_p256("k1"));
    let clock = TokioClock::new();
    let source = scripted_source(vec![Ok(modified(&[&key])), Err(())], Arc::default());
    // A cooldown shorter than the first backoff step, so the backoff is what holds.
    let policy = FreshnessPolicy::default()
        .unknown_kid_cooldown(Duration::from_secs(1))
        .backoff_initial(Duration::from_secs(20))
        .backoff_max(Duration::from_secs(60));
    let verifier = builder(source, Arc::new(clock.clone()))
        .policy(policy)
        .build()
        .unwrap();
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    // The refetch for the first forgery fails: 401 (the provider named k1's key), not 503.
    let outcome = verifier.verify::<Value>(&token(&forger, &clock)).await;
    assert!(is_bad_signature(&outcome), "{outcome:?}");
    assert_eq!(verifier.stats().fetch_failures, 1);
    // Backing off now (past the cooldown, within the first backoff step): refused at once,
    // no fetch, and valid tokens still verify.
    advance(Duration::from_secs(5)).await;
    let started = Instant::now();
    let outcome = verifier.verify::<Value>(&token(&forger, &clock)).await;
    assert!(is_bad_signature(&outcome), "{outcome:?}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    assert_eq!(verifier.stats().fetches, 2);
}

#[tokio::test(start_paused = true)]
async fn a_kid_that_is_gone_after_its_refetch_leaves_a_bad_signature_a_bad_signature() {
    let (key, forger, successor) = (
        TestKey::ec_p256("k1"),
        TestKey::ec_p256("k1"),
        TestKey::ec_p256("k2"),
    );
    let clock = TokioClock::new();
    let verifier = verifier(sequence(&[&[&key], &[&successor]]), &clock);
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    // The refetch brings a set without k1: nothing answers the token differently, so it stays
    // refused for its signature (it is not checked again, and k1 is not "unknown").
    let outcome = verifier.verify::<Value>(&token(&forger, &clock)).await;
    assert!(is_bad_signature(&outcome), "{outcome:?}");
    assert_eq!(verifier.stats().fetches_reused_kid, 1);
}

#[tokio::test(start_paused = true)]
async fn two_unknown_kids_are_remembered_as_absent_apart() {
    let key = TestKey::ec_p256("k1");
    let clock = TokioClock::new();
    // The warm-up, one refetch for kid a, one for kid b after the cooldown: no more.
    let verifier = verifier(sequence(&[&[&key], &[&key], &[&key]]), &clock);
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    let with_kid = |kid: &str| {
        let header = serde_json::json!({ "alg": key.alg(), "kid": kid });
        key.sign_with_header(&header, &claims(&clock))
    };
    let unknown = |outcome: &Result<Value, VerifyError>| {
        matches!(
            outcome,
            Err(VerifyError::InvalidToken(InvalidToken::UnknownKid))
        )
    };
    let a = with_kid("a");
    assert!(unknown(&verifier.verify::<Value>(&a).await));
    advance(COOLDOWN + Duration::from_secs(1)).await;
    // Kid a is known absent from this set: no refetch for it. Kid b, issued after that set,
    // was never looked for.
    assert!(unknown(&verifier.verify::<Value>(&a).await));
    assert_eq!(verifier.stats().fetches, 2);
    assert!(unknown(&verifier.verify::<Value>(&with_kid("b")).await));
    assert_eq!(verifier.stats().fetches, 3);
}

#[tokio::test(start_paused = true)]
async fn a_thumbprint_reused_for_a_new_key_is_refetched_once_and_its_tokens_accepted() {
    use jwkstash_jwks::testkit::b64;
    for member in ["x5t", "x5t#S256"] {
        let thumbprint = b64(vec![7u8; if member == "x5t" { 20 } else { 32 }]);
        // JWKs that state the thumbprint (no certificate), and no kid.
        let stated = |key: &TestKey| {
            let mut jwk = key.public_jwk();
            let jwk = jwk.as_object_mut().unwrap();
            jwk.remove("kid");
            jwk.insert(member.to_owned(), thumbprint.clone().into());
            serde_json::json!({ "keys": [jwk] })
        };
        let (old, new) = (TestKey::ec_p256("unused"), TestKey::ec_p256("unused"));
        let clock = TokioClock::new();
        let verifier = verifier(documents(&[stated(&old), stated(&new)]), &clock);
        let header = serde_json::json!({ "alg": "ES256", member: thumbprint });
        let signed_by = |key: &TestKey| key.sign_with_header(&header, &claims(&clock));
        verifier.verify::<Value>(&signed_by(&old)).await.unwrap();
        // The provider now signs with a new key under the same certificate thumbprint.
        let claims: Value = verifier.verify(&signed_by(&new)).await.unwrap();
        assert_eq!(claims["sub"], "user-1", "{member}");
        assert_eq!(verifier.stats().fetches_reused_kid, 1, "{member}");
    }
}
