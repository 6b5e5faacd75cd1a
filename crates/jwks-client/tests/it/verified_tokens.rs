//! The opt-in verified-token cache: a repeated token skips the signature check, and still
//! expires, still needs its key in the current set, and serves any claims type.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::TokioClock;
use jwkstash_jwks::testkit::{TestKey, eventually};
use jwkstash_jwks::{InvalidToken, Verifier, VerifyError};
use serde::Deserialize;
use serde_json::Value;

fn cached_verifier(
    answers: Vec<Result<jwkstash_core::Fetched, ()>>,
    clock: &TokioClock,
) -> Verifier {
    let source = scripted_source(answers, Arc::new(AtomicUsize::new(0)));
    builder(source, Arc::new(clock.clone()))
        .cache_verified_tokens(10_000, Duration::from_secs(300))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_repeated_token_is_checked_once() {
    let key = TestKey::rsa("k1");
    let clock = TokioClock::new();
    let verifier = cached_verifier(vec![Ok(modified(&[&key]))], &clock);
    let token = token(&key, &clock);
    for _ in 0..10 {
        let claims: Value = verifier.verify(&token).await.unwrap();
        assert_eq!(claims["sub"], "user-1");
    }
    let stats = verifier.stats();
    assert_eq!(
        (
            stats.signature_checks,
            stats.verified_token_hits,
            stats.verified
        ),
        (1, 9, 10)
    );
    // Another token is checked on its own.
    let other = key.sign(&{
        let mut claims = claims(&clock);
        claims["sub"] = "user-2".into();
        claims
    });
    let claims: Value = verifier.verify(&other).await.unwrap();
    assert_eq!(claims["sub"], "user-2");
    assert_eq!(verifier.stats().signature_checks, 2);
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_still_expires() {
    let key = TestKey::ed25519("k1");
    let clock = TokioClock::new();
    let verifier = cached_verifier(vec![Ok(modified(&[&key]))], &clock);
    let token = token(&key, &clock); // exp in two hours
    verifier.verify::<Value>(&token).await.unwrap();
    verifier.verify::<Value>(&token).await.unwrap();
    tokio::time::advance(Duration::from_secs(2 * 3600 + 61)).await;
    let error = verifier.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(error, VerifyError::InvalidToken(InvalidToken::Expired)),
        "{error:?}"
    );
    assert_eq!(verifier.stats().verified_token_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_whose_key_was_rotated_out_is_refused_after_the_refresh() {
    let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
    let clock = TokioClock::new();
    let verifier = cached_verifier(vec![Ok(modified(&[&old])), Ok(modified(&[&new]))], &clock);
    let token = token(&old, &clock);
    verifier.verify::<Value>(&token).await.unwrap();
    verifier.verify::<Value>(&token).await.unwrap();
    assert_eq!(verifier.stats().verified_token_hits, 1);
    // The TTL passes; the refresh brings a set without the old key.
    tokio::time::advance(Duration::from_secs(11 * 60)).await;
    verifier
        .verify::<Value>(&self::token(&new, &clock))
        .await
        .unwrap();
    let error = verifier.verify::<Value>(&token).await.unwrap_err();
    assert!(error.is_invalid_token(), "{error:?}");
    assert_eq!(verifier.stats().verified_token_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn the_same_key_under_the_same_kid_but_new_material_is_checked_again() {
    let (first, second) = (TestKey::ed25519("k1"), TestKey::ed25519("k1"));
    let clock = TokioClock::new();
    let verifier = cached_verifier(
        vec![Ok(modified(&[&first])), Ok(modified(&[&second]))],
        &clock,
    );
    let token = token(&first, &clock);
    verifier.verify::<Value>(&token).await.unwrap();
    tokio::time::advance(Duration::from_secs(11 * 60)).await;
    // The stale set serves while the refresh runs; then the new set is in place.
    verifier.key_set().await.unwrap();
    eventually("the set was refreshed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    // The kid survived the refresh, the key did not: the cached verdict is not reused.
    let error = verifier.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(error, VerifyError::InvalidToken(InvalidToken::BadSignature)),
        "{error:?}"
    );
}

#[derive(Deserialize)]
struct Subject {
    sub: String,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct NeedsRole {
    role: String,
}

#[tokio::test(start_paused = true)]
async fn cached_claims_serve_any_claims_type() {
    let key = TestKey::ec_p256("k1");
    let clock = TokioClock::new();
    let verifier = cached_verifier(vec![Ok(modified(&[&key]))], &clock);
    let token = token(&key, &clock);
    let value: Value = verifier.verify(&token).await.unwrap();
    let subject: Subject = verifier.verify(&token).await.unwrap();
    assert_eq!(value["sub"], subject.sub);
    let error = verifier.verify::<NeedsRole>(&token).await.unwrap_err();
    assert!(matches!(
        error,
        VerifyError::InvalidToken(InvalidToken::ClaimsType)
    ));
    assert_eq!(verifier.stats().signature_checks, 1);
}

#[tokio::test(start_paused = true)]
async fn forged_tokens_are_never_cached() {
    let (key, forger) = (TestKey::ed25519("k1"), TestKey::ed25519("k1"));
    let clock = TokioClock::new();
    let verifier = cached_verifier(vec![Ok(modified(&[&key]))], &clock);
    let forged = token(&forger, &clock);
    for _ in 0..3 {
        let error = verifier.verify::<Value>(&forged).await.unwrap_err();
        assert!(matches!(
            error,
            VerifyError::InvalidToken(InvalidToken::BadSignature)
        ));
    }
    assert_eq!(verifier.stats().signature_checks, 3);
}
