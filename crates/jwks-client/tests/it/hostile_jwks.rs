//! Hostile JWKS documents: bad keys are skipped, refused keys refused, pathological JSON fails
//! cleanly, and an unusable document never replaces a good set.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use jwkstash_jwks::testkit::{TestKey, b64, eventually};
use jwkstash_jwks::{KeySet, KeySetError, MAX_KEYS, RefreshError, SkipReason, VerifyError};
use serde_json::{Value, json};

#[test]
fn pathological_json_fails_without_overflowing_the_stack() {
    let nested = format!(
        r#"{{"keys":[{{"kty":"RSA","x":{}1{}}}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(KeySet::parse(nested).is_err());
    let deep_document = "[".repeat(100_000);
    assert!(KeySet::parse(deep_document).is_err());
    let million_digits = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"a","n":1{}}}]}}"#,
        "0".repeat(1_000_000)
    );
    assert!(KeySet::parse(million_digits).is_err());
    let million_digit_member = format!(
        r#"{{"keys":[{}],"x":1{}}}"#,
        TestKey::ed25519("ok").public_jwk(),
        "0".repeat(1_000_000)
    );
    // An absurd number elsewhere in the document does not hide the good key.
    assert_eq!(
        KeySet::parse(million_digit_member).map(|set| set.keys().len()),
        Ok(1)
    );
    for bytes in [
        &b"\xff\xfe{\"keys\":[]}"[..],
        b"{\"keys\":[\"\xc3\x28\"]}",
        b"\x00\x00\x00",
    ] {
        assert!(KeySet::parse(bytes.to_vec()).is_err());
    }
}

#[test]
fn duplicate_members_in_a_key_skip_that_key() {
    let good = TestKey::ed25519("good");
    let jwk = good.public_jwk();
    let duplicated = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","kid":"dup","x":{},"x":{}}}"#,
        jwk["x"],
        json!(b64([7u8; 32]))
    );
    let document = format!(r#"{{"keys":[{duplicated},{jwk}]}}"#);
    let set = KeySet::parse(document).unwrap();
    assert!(!set.contains_kid("dup"));
    assert_eq!(set.skipped()[0].reason, SkipReason::Malformed);
    assert!(set.contains_kid("good"));
}

#[test]
fn too_many_keys_are_capped() {
    let keys: Vec<Value> = (0..MAX_KEYS + 20)
        .map(|i| json!({ "kty": "OKP", "crv": "Ed25519", "kid": format!("k{i}"), "x": b64([i as u8; 32]) }))
        .collect();
    let set = KeySet::parse(json!({ "keys": keys }).to_string()).unwrap();
    assert_eq!(set.keys().len(), MAX_KEYS);
    assert_eq!(
        set.skipped()
            .iter()
            .filter(|s| s.reason == SkipReason::TooManyKeys)
            .count(),
        20
    );
}

#[test]
fn an_exponent_of_one_and_tiny_moduli_are_refused() {
    let rsa = TestKey::rsa("rsa");
    let mut e1 = rsa.public_jwk();
    e1["e"] = json!("AQ");
    let mut small = rsa.public_jwk();
    let n = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        small["n"].as_str().unwrap(),
    )
    .unwrap();
    small["n"] = json!(b64(&n[..128]));
    let mut zero_padded = rsa.public_jwk();
    // Leading zero bytes do not make a small modulus large.
    let mut padded = vec![0u8; 200];
    padded.extend_from_slice(&n[..128]);
    zero_padded["n"] = json!(b64(padded));
    for (jwk, reason) in [
        (e1, SkipReason::RsaExponent),
        (small, SkipReason::RsaSize),
        (zero_padded, SkipReason::RsaSize),
    ] {
        let set = KeySet::parse(
            json!({ "keys": [jwk, TestKey::ed25519("ok").public_jwk()] }).to_string(),
        )
        .unwrap();
        assert_eq!(set.skipped()[0].reason, reason);
    }
}

/// A document without a usable key is a failed fetch: the good set stays in use.
#[tokio::test(start_paused = true)]
async fn an_unusable_document_never_replaces_a_good_set() {
    let key = TestKey::ed25519("k1");
    let clock = jwkstash_core::TokioClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let unusable = [
        r#"{"keys":[]}"#.to_owned(),
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_owned(),
        json!({ "keys": [{ "kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB" }] }).to_string(),
        "null".to_owned(),
    ];
    let mut answers = vec![Ok(modified(&[&key]))];
    answers.extend(unusable.iter().map(|text| Ok(raw(text.clone()))));
    let source = scripted_source(answers, Arc::clone(&calls));
    let verifier = builder(source, Arc::new(clock.clone())).build().unwrap();
    let token = token(&key, &clock);
    verifier.verify::<Value>(&token).await.unwrap();
    let good = verifier.key_set().await.unwrap();
    for round in 1..=unusable.len() as u64 {
        // Past the TTL and past the backoff: each round refetches (in the background, while
        // the stale set serves), gets junk, keeps the set.
        tokio::time::advance(Duration::from_secs(11 * 60)).await;
        verifier.verify::<Value>(&token).await.unwrap();
        eventually("the junk was refused", || {
            verifier.stats().fetch_failures == round
        })
        .await;
        assert!(Arc::ptr_eq(&good, &verifier.key_set().await.unwrap()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1 + unusable.len());

    // A cold verifier facing only junk reports the cause, as "keys unavailable".
    let calls = Arc::new(AtomicUsize::new(0));
    let cold = builder(
        scripted_source(vec![Ok(raw(r#"{"keys":[]}"#))], calls),
        Arc::new(clock.clone()),
    )
    .build()
    .unwrap();
    let Err(VerifyError::KeysUnavailable(error)) = cold.verify::<Value>(&token).await else {
        panic!("junk was accepted");
    };
    assert!(matches!(
        error.cause(),
        RefreshError::KeySet(KeySetError::NoUsableKey { .. })
    ));
}
