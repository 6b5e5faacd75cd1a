//! Verification with real keys: every algorithm family, the checks before the signature, and
//! claims only after it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{Clock, ManualClock, MockKeySource};
use jwkstash_jwks::testkit::{TestKey, b64};
use jwkstash_jwks::{Algorithm, InvalidToken, Verifier, VerifyError};
use serde::Deserialize;
use serde_json::{Value, json};

fn verifier_for(keys: &[&TestKey], clock: &ManualClock) -> Verifier {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(keys);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

fn invalid(outcome: Result<Value, VerifyError>) -> InvalidToken {
    match outcome {
        Err(VerifyError::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn every_family_verifies() {
    let clock = ManualClock::default();
    let keys = [
        TestKey::rsa("rs256"),
        TestKey::rsa("ps256").with_alg(Algorithm::PS256),
        TestKey::rsa("rs512").with_alg(Algorithm::RS512),
        TestKey::ec_p256("es256"),
        TestKey::ec_p384("es384"),
        TestKey::ed25519("eddsa"),
    ];
    let verifier = verifier_for(&keys.iter().collect::<Vec<_>>(), &clock);
    for key in &keys {
        let claims: Value = verifier.verify(&token(key, &clock)).await.unwrap();
        assert_eq!(claims["sub"], "user-1", "{key:?}");
    }
    assert_eq!(verifier.stats().verified, 6);
}

#[derive(Deserialize)]
struct Typed {
    sub: String,
    exp: u64,
}

#[tokio::test]
async fn claims_deserialize_into_the_callers_type() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k");
    let verifier = verifier_for(&[&key], &clock);
    let claims: Typed = verifier.verify(&token(&key, &clock)).await.unwrap();
    assert_eq!(claims.sub, "user-1");
    assert!(claims.exp > 0);
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct NeedsRole {
        role: String,
    }
    let error = verifier
        .verify::<NeedsRole>(&token(&key, &clock))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        VerifyError::InvalidToken(InvalidToken::ClaimsType)
    ));
}

#[tokio::test]
async fn a_signature_by_another_key_with_the_same_kid_is_refused() {
    let clock = ManualClock::default();
    let published = TestKey::ec_p256("k");
    let impostor = TestKey::ec_p256("k");
    let verifier = verifier_for(&[&published], &clock);
    assert_eq!(
        invalid(verifier.verify(&token(&impostor, &clock)).await),
        InvalidToken::BadSignature
    );
}

#[tokio::test]
async fn claims_are_checked_after_the_signature() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k");
    let other = TestKey::ed25519("k");
    let verifier = verifier_for(&[&key], &clock);
    let mut expired = claims(&clock);
    expired["exp"] = json!(1);
    // Forged and expired: the answer is about the signature, not the claims.
    assert_eq!(
        invalid(verifier.verify(&other.sign(&expired)).await),
        InvalidToken::BadSignature
    );
    assert_eq!(
        invalid(verifier.verify(&key.sign(&expired)).await),
        InvalidToken::Expired
    );
}

#[tokio::test]
async fn expiry_follows_the_injected_clock_with_leeway() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k");
    let verifier = verifier_for(&[&key], &clock);
    let token = token(&key, &clock);
    clock.advance(Duration::from_secs(7200 + 59));
    verifier.verify::<Value>(&token).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        invalid(verifier.verify(&token).await),
        InvalidToken::Expired
    );
}

#[tokio::test]
async fn cheap_checks_refuse_before_any_fetch() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k");
    let verifier = builder(silent_source(), Arc::new(clock.clone()))
        .build()
        .unwrap();
    let claims = claims(&clock).to_string();
    let cases: Vec<(String, InvalidToken)> = vec![
        (
            "a".repeat(20_000),
            InvalidToken::TooLarge { limit: 16 * 1024 },
        ),
        ("a.b".into(), InvalidToken::Malformed("not three segments")),
        (
            "a.b.c.d".into(),
            InvalidToken::Malformed("not three segments"),
        ),
        (
            "a.b.c.d.e".into(),
            InvalidToken::Malformed("not three segments"),
        ),
        (
            format!("{}..sig", b64("{}")),
            InvalidToken::Malformed("empty segment"),
        ),
        (
            key.sign_raw(br#"{"alg":"none","kid":"k"}"#, claims.as_bytes()),
            InvalidToken::AlgorithmNotAllowed,
        ),
        (
            key.sign_raw(br#"{"alg":"HS256","kid":"k"}"#, claims.as_bytes()),
            InvalidToken::AlgorithmNotAllowed,
        ),
        (
            key.sign_raw(br#"{"alg":"eddsa","kid":"k"}"#, claims.as_bytes()),
            InvalidToken::AlgorithmNotAllowed,
        ),
        (
            key.sign_raw(
                br#"{"alg":"EdDSA","kid":"k","crit":["exp"]}"#,
                claims.as_bytes(),
            ),
            InvalidToken::UnsupportedCritical,
        ),
        (
            key.sign_raw(br#"{"alg":"EdDSA","kid":7}"#, claims.as_bytes()),
            InvalidToken::InvalidKid,
        ),
        (
            key.sign_raw(br#"{"alg":"EdDSA","kid":""}"#, claims.as_bytes()),
            InvalidToken::InvalidKid,
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(
            invalid(verifier.verify(&token).await),
            expected,
            "{:.60}",
            token
        );
    }
    let duplicate = key.sign_raw(
        br#"{"alg":"EdDSA","kid":"k","alg":"EdDSA"}"#,
        claims.as_bytes(),
    );
    assert!(matches!(
        invalid(verifier.verify(&duplicate).await),
        InvalidToken::Malformed(_)
    ));
    let padded = format!("{}=", key.sign(&json!({})));
    assert!(matches!(
        invalid(verifier.verify(&padded).await),
        InvalidToken::Malformed(_)
    ));
}

#[tokio::test]
async fn a_token_without_kid_needs_a_single_fitting_key() {
    let clock = ManualClock::default();
    let only = TestKey::ed25519("only");
    let verifier = verifier_for(&[&only, &TestKey::ec_p256("ec")], &clock);
    let no_kid = only.sign_with_header(&json!({ "alg": "EdDSA" }), &claims(&clock));
    verifier.verify::<Value>(&no_kid).await.unwrap();

    let (a, b) = (TestKey::ed25519("a"), TestKey::ed25519("b"));
    let verifier = verifier_for(&[&a, &b], &clock);
    let no_kid = a.sign_with_header(&json!({ "alg": "EdDSA" }), &claims(&clock));
    assert_eq!(
        invalid(verifier.verify(&no_kid).await),
        InvalidToken::MissingKid
    );
}

#[tokio::test]
async fn restricting_algorithms_refuses_the_others() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k");
    let verifier = builder(silent_source(), Arc::new(clock.clone()))
        .algorithms(&[Algorithm::RS256])
        .build()
        .unwrap();
    assert_eq!(
        invalid(verifier.verify(&token(&key, &clock)).await),
        InvalidToken::AlgorithmNotAllowed
    );
    let _ = clock.now();
}

#[test]
fn dangerous_configurations_are_refused() {
    use jwkstash_jwks::BuildError;
    let source = || {
        let mut source = MockKeySource::new();
        source.expect_id().return_const(JWKS_URL.to_owned());
        source
    };
    let base = || Verifier::builder().key_source(source());
    assert!(matches!(
        base().audience("a").build(),
        Err(BuildError::MissingIssuer)
    ));
    assert!(matches!(
        base().issuer(ISSUER).build(),
        Err(BuildError::MissingAudience)
    ));
    assert!(matches!(
        base().issuer(ISSUER).audience("").build(),
        Err(BuildError::InvalidSetting(_))
    ));
    assert!(matches!(
        base().issuer(ISSUER).audience("a").algorithms(&[]).build(),
        Err(BuildError::InvalidSetting(_))
    ));
    // HMAC and `none` cannot even be named.
    for name in ["HS256", "HS384", "HS512", "none", "rs256", ""] {
        assert_eq!(
            name.parse::<Algorithm>(),
            Err(jwkstash_jwks::UnsupportedAlgorithm),
            "{name}"
        );
    }
    assert_eq!("PS384".parse::<Algorithm>(), Ok(Algorithm::PS384));
    assert!(matches!(
        Verifier::builder().issuer(ISSUER).audience("a").build(),
        Err(BuildError::MissingKeySource)
    ));
    assert!(matches!(
        Verifier::builder()
            .jwks_url("http://idp.example.com/jwks")
            .issuer(ISSUER)
            .audience("a")
            .build(),
        Err(BuildError::InsecureUrl(_))
    ));
    assert!(base().issuer(ISSUER).any_audience().build().is_ok());
}
