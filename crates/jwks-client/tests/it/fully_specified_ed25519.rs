//! The fully-specified algorithm name `Ed25519` (RFC 9864), as jose 6, jwcrypto, joserfc and
//! oidc-provider 9 sign and publish it: the same signature as `EdDSA` on an Ed25519 key, never
//! on another curve. Every token carries a genuine signature.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;

use crate::common::*;
use jwkstash_core::ManualClock;
use jwkstash_jwks::testkit::{TestKey, b64, b64_decode};
use jwkstash_jwks::{
    Algorithm, DEFAULT_ALGORITHMS, InvalidToken, KeyKind, KeySet, SkipReason, Verifier, VerifyError,
};
use serde_json::{Value, json};

fn verifier_over(keys: Vec<Value>, clock: &ManualClock) -> Verifier {
    let source = serving(json!({ "keys": keys }).to_string());
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

async fn outcome(verifier: &Verifier, token: &str) -> Result<(), InvalidToken> {
    match verifier.verify::<Value>(token).await {
        Ok(claims) => {
            assert_eq!(claims["sub"], "user-1");
            Ok(())
        }
        Err(VerifyError::InvalidToken(reason)) => Err(reason),
        Err(other) => panic!("keys unavailable: {other:?}"),
    }
}

/// `key`'s public JWK with its `alg` member set to `alg`, or removed.
fn jwk_with_alg(key: &TestKey, alg: Option<&str>) -> Value {
    let mut jwk = key.public_jwk();
    match alg {
        Some(alg) => jwk["alg"] = json!(alg),
        None => drop(jwk.as_object_mut().unwrap().remove("alg")),
    }
    jwk
}

#[tokio::test]
async fn a_token_and_a_jwk_named_ed25519_verify() {
    let clock = ManualClock::default();
    // jose 6 and oidc-provider 9: `alg: Ed25519` in the JWK and in the token header.
    let key = TestKey::ed25519("ed").with_alg(Algorithm::Ed25519);
    assert_eq!(key.public_jwk()["alg"], "Ed25519");
    let verifier = verifier_over(vec![key.public_jwk()], &clock);
    let set = verifier.key_set().await.unwrap();
    assert!(set.skipped().is_empty());
    assert_eq!(set.keys()[0].algorithm(), Some(Algorithm::Ed25519));
    assert_eq!(set.keys()[0].kind(), KeyKind::Ed25519);
    let token = token(&key, &clock);
    let header = b64_decode(token.split('.').next().unwrap());
    assert!(
        String::from_utf8(header)
            .unwrap()
            .contains(r#""alg":"Ed25519""#)
    );
    assert_eq!(outcome(&verifier, &token).await, Ok(()));
}

#[tokio::test]
async fn ed25519_and_eddsa_are_one_signature_on_an_ed25519_key() {
    let clock = ManualClock::default();
    // Every pairing of the JWK's alg (either name, or none) with the token's alg verifies.
    for jwk_alg in [Some("Ed25519"), Some("EdDSA"), None] {
        let key = TestKey::ed25519("ed");
        let verifier = verifier_over(vec![jwk_with_alg(&key, jwk_alg)], &clock);
        for token_alg in ["Ed25519", "EdDSA"] {
            let token = key.sign_with_header(
                &json!({ "alg": token_alg, "kid": "ed", "typ": "JWT" }),
                &claims(&clock),
            );
            assert_eq!(
                outcome(&verifier, &token).await,
                Ok(()),
                "JWK {jwk_alg:?}, token {token_alg}"
            );
        }
        // A signature by another Ed25519 key under either name is still a bad signature.
        let forger = TestKey::ed25519("ed").with_alg(Algorithm::Ed25519);
        assert_eq!(
            outcome(&verifier, &token(&forger, &clock)).await,
            Err(InvalidToken::BadSignature)
        );
    }
}

#[tokio::test]
async fn ed25519_fits_ed25519_keys_only() {
    let clock = ManualClock::default();
    let (p256, rsa, ed) = (
        TestKey::ec_p256("p256"),
        TestKey::rsa("rsa"),
        TestKey::ed25519("ed"),
    );
    // A JWK pinned to Ed25519 must be an Ed25519 key: not EC, RSA or Ed448.
    let ed448 = json!({ "kty": "OKP", "crv": "Ed448", "kid": "ed448", "alg": "Ed25519", "x": b64([7u8; 57]) });
    let document = json!({ "keys": [
        jwk_with_alg(&p256, Some("Ed25519")),
        jwk_with_alg(&rsa, Some("Ed25519")),
        ed448,
        jwk_with_alg(&ed, Some("Ed25519")),
    ] })
    .to_string();
    let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
    assert_eq!(usable.len(), 1);
    assert_eq!(
        skipped
            .iter()
            .map(|skip| (skip.kid.as_deref(), skip.reason))
            .collect::<Vec<_>>(),
        [
            (Some("p256"), SkipReason::UnsupportedAlgorithm),
            (Some("rsa"), SkipReason::UnsupportedAlgorithm),
            (Some("ed448"), SkipReason::UnsupportedCurve),
        ]
    );
    // A token named Ed25519 under the kid of a P-256 key (its JWK unpinned) is refused
    // before any signature check; so is one named Ed448.
    let verifier = verifier_over(
        vec![jwk_with_alg(&p256, None), jwk_with_alg(&ed, None)],
        &clock,
    );
    let as_alg = |key: &TestKey, alg: &str, kid: &str| {
        key.sign_with_header(&json!({ "alg": alg, "kid": kid }), &claims(&clock))
    };
    assert_eq!(
        outcome(&verifier, &as_alg(&ed, "Ed25519", "p256")).await,
        Err(InvalidToken::AlgorithmMismatch)
    );
    assert_eq!(
        outcome(&verifier, &as_alg(&p256, "ES256", "ed")).await,
        Err(InvalidToken::AlgorithmMismatch)
    );
    assert_eq!(
        outcome(&verifier, &as_alg(&ed, "Ed448", "ed")).await,
        Err(InvalidToken::AlgorithmNotSupported("Ed448"))
    );
    // Case matters, as for every name.
    assert_eq!(
        outcome(&verifier, &as_alg(&ed, "ED25519", "ed")).await,
        Err(InvalidToken::AlgorithmNotAllowed)
    );
    assert_eq!(
        outcome(&verifier, &as_alg(&ed, "Ed25519", "ed")).await,
        Ok(())
    );
}

#[tokio::test]
async fn the_two_names_are_separate_on_the_allow_list() {
    let clock = ManualClock::default();
    assert!(DEFAULT_ALGORITHMS.contains(&Algorithm::Ed25519));
    assert!(DEFAULT_ALGORITHMS.contains(&Algorithm::EdDSA));
    let key = TestKey::ed25519("ed");
    let only = |algs: &'static [Algorithm]| {
        let source = serving(json!({ "keys": [key.public_jwk()] }).to_string());
        builder(source, Arc::new(clock.clone()))
            .algorithms(algs)
            .build()
            .unwrap()
    };
    let as_alg =
        |alg: &str| key.sign_with_header(&json!({ "alg": alg, "kid": "ed" }), &claims(&clock));
    let eddsa_only = only(&[Algorithm::EdDSA]);
    assert_eq!(outcome(&eddsa_only, &as_alg("EdDSA")).await, Ok(()));
    assert_eq!(
        outcome(&eddsa_only, &as_alg("Ed25519")).await,
        Err(InvalidToken::AlgorithmNotAllowed)
    );
    let ed25519_only = only(&[Algorithm::Ed25519]);
    assert_eq!(outcome(&ed25519_only, &as_alg("Ed25519")).await, Ok(()));
    assert_eq!(
        outcome(&ed25519_only, &as_alg("EdDSA")).await,
        Err(InvalidToken::AlgorithmNotAllowed)
    );
}

#[test]
fn the_name_parses_prints_and_converts() {
    assert_eq!(Algorithm::from_str("Ed25519"), Ok(Algorithm::Ed25519));
    assert!(Algorithm::from_str("ed25519").is_err());
    assert!(Algorithm::from_str("Ed448").is_err());
    assert_eq!(Algorithm::Ed25519.to_string(), "Ed25519");
    assert_eq!(
        serde_json::to_value(Algorithm::Ed25519).unwrap(),
        json!("Ed25519")
    );
    // jsonwebtoken's EdDSA is the same signature (it verifies Ed25519 only).
    assert_eq!(
        jsonwebtoken::Algorithm::try_from(Algorithm::Ed25519),
        Ok(jsonwebtoken::Algorithm::EdDSA)
    );
    assert!(KeyKind::Ed25519.fits(Algorithm::Ed25519));
    assert!(!KeyKind::EcP256.fits(Algorithm::Ed25519));
}

#[tokio::test]
async fn verify_signature_takes_either_name_and_no_other_algorithm() {
    let key = TestKey::ed25519("ed").with_alg(Algorithm::Ed25519);
    let set = KeySet::parse(json!({ "keys": [key.public_jwk()] }).to_string()).unwrap();
    let verifying = &set.keys()[0];
    let message = b"header.payload";
    let signature = b64(key.signature(message));
    assert!(verifying.verify_signature(Algorithm::Ed25519, message, &signature));
    assert!(verifying.verify_signature(Algorithm::EdDSA, message, &signature));
    assert!(!verifying.verify_signature(Algorithm::Ed25519, b"header.payloaD", &signature));
    // An algorithm the key does not accept is false before any crypto.
    assert!(!verifying.verify_signature(Algorithm::ES256, message, &signature));
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &signature));
}
