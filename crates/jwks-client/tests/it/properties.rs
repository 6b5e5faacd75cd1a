//! Property tests: arbitrary bytes and arbitrary JSON as a token, a header, claims and a JWKS
//! body never panic, always give a typed error, and finish (a hang fails the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{ManualClock, MockKeySource};
use jwkstash_jwks::testkit::{TestKey, b64};
use jwkstash_jwks::{KeySet, Verifier, VerifyError};
use proptest::prelude::*;
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn verifier(key: &TestKey, clock: &ManualClock) -> Verifier {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(&[key]);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

/// Verifies on `runtime`, failing on a panic (propagated) or on a hang.
fn verify(
    runtime: &tokio::runtime::Runtime,
    verifier: &Verifier,
    token: &str,
) -> Result<Value, VerifyError> {
    runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(5), verifier.verify::<Value>(token)).await
        })
        .expect("a verification hung")
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        prop_oneof![
            Just("RS256"),
            Just("ES256"),
            Just("EdDSA"),
            Just("none"),
            Just("HS256"),
            Just("k1")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("alg".to_owned()),
                    Just("kid".to_owned()),
                    Just("exp".to_owned()),
                    Just("aud".to_owned()),
                    Just("crit".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_as_tokens(token in ".{0,300}") {
        let (runtime, clock) = (runtime(), ManualClock::default());
        let verifier = verifier(&TestKey::ed25519("k1"), &clock);
        prop_assert!(matches!(verify(&runtime, &verifier, &token), Err(VerifyError::InvalidToken(_))));
    }

    #[test]
    fn arbitrary_bytes_in_three_segments(header in prop::collection::vec(any::<u8>(), 0..200), payload in prop::collection::vec(any::<u8>(), 0..200), signature in prop::collection::vec(any::<u8>(), 0..100)) {
        let (runtime, clock) = (runtime(), ManualClock::default());
        let verifier = verifier(&TestKey::ed25519("k1"), &clock);
        let token = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature));
        prop_assert!(matches!(verify(&runtime, &verifier, &token), Err(VerifyError::InvalidToken(_))));
    }

    #[test]
    fn arbitrary_json_headers_with_a_real_signature(header in json_value()) {
        let (runtime, clock) = (runtime(), ManualClock::default());
        let key = TestKey::ed25519("k1");
        let verifier = verifier(&key, &clock);
        let token = key.sign_with_header(&header, &claims(&clock));
        // Only a header naming EdDSA (or its fully-specified name, Ed25519) and kid k1 (or no
        // kid) with nothing critical may pass.
        if verify(&runtime, &verifier, &token).is_ok() {
            prop_assert!(header["alg"] == json!("EdDSA") || header["alg"] == json!("Ed25519"));
            prop_assert!(header.get("crit").is_none());
        }
    }

    #[test]
    fn arbitrary_json_claims_with_a_real_signature(claims in json_value()) {
        let (runtime, clock) = (runtime(), ManualClock::default());
        let key = TestKey::ed25519("k1");
        let verifier = verifier(&key, &clock);
        // Arbitrary claims never carry our issuer and audience: always refused, never a panic.
        prop_assert!(verify(&runtime, &verifier, &key.sign(&claims)).is_err());
    }

    #[test]
    fn arbitrary_bytes_as_a_jwks(body in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = KeySet::parse(body);
    }

    #[test]
    fn arbitrary_json_keys_in_a_jwks(keys in prop::collection::vec(json_value(), 0..8)) {
        if let Ok(set) = KeySet::parse(json!({ "keys": keys }).to_string()) {
            prop_assert!(!set.keys().is_empty());
        }
    }

    #[test]
    fn arbitrary_members_on_a_real_key(name in prop_oneof![Just("kty"), Just("crv"), Just("x"), Just("alg"), Just("use"), Just("key_ops"), Just("kid"), Just("d")], value in json_value()) {
        let mut jwk = TestKey::ed25519("k1").public_jwk();
        jwk[name] = value;
        let _ = KeySet::parse(json!({ "keys": [jwk] }).to_string());
    }
}
