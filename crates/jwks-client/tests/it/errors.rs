//! Errors that say what to do: each names a method the caller has, the values and defaults
//! involved, or the cause behind it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{FetchError, ManualClock, MockKeySource, TokioClock};
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{
    BuildError, FreshnessPolicy, InvalidToken, StaticKeySource, Verifier, VerifierBuilder,
    VerifyError,
};
use serde_json::{Value, json};

fn refused(builder: VerifierBuilder) -> String {
    builder
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .map(drop)
        .unwrap_err()
        .to_string()
}

#[test]
fn build_errors_name_the_methods_the_verifier_builder_has() {
    for builder in [
        Verifier::builder().jwks_url("http://idp.example.com/jwks"),
        Verifier::builder().discover("http://idp.example.com/"),
    ] {
        let message = refused(builder);
        assert!(message.contains("allow_http_loopback()"), "{message}");
        assert!(!message.contains("allow_http(true)"), "{message}");
    }
    // With the opt-in, another host is still refused, and the message says why.
    let message = refused(
        Verifier::builder()
            .jwks_url("http://idp.example.com/jwks")
            .allow_http_loopback(),
    );
    assert!(message.contains("loopback"), "{message}");

    let missing_cache = BuildError::MissingCache.to_string();
    assert!(missing_cache.contains("near_tier()"), "{missing_cache}");
    assert!(!missing_cache.contains("call cache()"), "{missing_cache}");

    let missing_source = refused(Verifier::builder());
    for call in ["jwks_url()", "discover()", "key_source()"] {
        assert!(missing_source.contains(call), "{missing_source}");
    }
}

#[test]
fn conflicting_calls_are_refused_naming_both() {
    let url = "https://idp.example.com/jwks";
    let issuer = "https://idp.example.com/";
    type Call = fn(VerifierBuilder) -> VerifierBuilder;
    let calls: [(&str, Call); 3] = [
        ("jwks_url()", |b| b.jwks_url("https://idp.example.com/jwks")),
        ("discover()", |b| b.discover("https://idp.example.com/")),
        ("key_source()", |b| b.key_source(silent_source())),
    ];
    for (first, call_first) in &calls {
        for (second, call_second) in &calls {
            let message = refused(call_second(call_first(Verifier::builder())));
            assert!(
                message.contains(first) && message.contains(second),
                "{first} then {second}: {message}"
            );
        }
    }
    // Each alone builds.
    for (_, call) in &calls {
        assert!(
            call(Verifier::builder())
                .issuer(issuer)
                .audience(AUDIENCE)
                .build()
                .is_ok()
        );
    }
    // The loopback opt-in applies to jwks_url() and discover(), never to a caller's source.
    for builder in [
        Verifier::builder()
            .allow_http_loopback()
            .key_source(silent_source()),
        Verifier::builder()
            .key_source(silent_source())
            .allow_http_loopback(),
    ] {
        let message = refused(builder);
        assert!(
            message.contains("allow_http_loopback()") && message.contains("key_source()"),
            "{message}"
        );
    }
    assert!(
        Verifier::builder()
            .jwks_url(url)
            .allow_http_loopback()
            .issuer(issuer)
            .audience(AUDIENCE)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn a_ttl_out_of_range_says_the_range_and_its_defaults() {
    let message = builder(silent_source(), Arc::new(TokioClock::new()))
        .policy(FreshnessPolicy::default().ttl(Duration::from_secs(2)))
        .build()
        .map(drop)
        .unwrap_err()
        .to_string();
    for part in [
        "ttl", "2 s", "min_ttl", "1 min", "max_ttl", "24 h", "default",
    ] {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
    let message = builder(silent_source(), Arc::new(TokioClock::new()))
        .policy(FreshnessPolicy::default().backoff_initial(Duration::from_secs(120)))
        .build()
        .map(drop)
        .unwrap_err()
        .to_string();
    for part in [
        "backoff_initial",
        "2 min",
        "backoff_max",
        "1 min",
        "default",
    ] {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
}

/// The README answers 503 with `println!("503: {error}")`: that line must say why.
#[tokio::test]
async fn keys_unavailable_says_what_failed() {
    let clock = ManualClock::default();
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    source.expect_fetch().returning(|_| {
        Err(FetchError::Connect(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused by 192.0.2.7:443",
        ))))
    });
    let verifier = builder(source, Arc::new(clock.clone())).build().unwrap();
    let error = verifier
        .verify::<Value>(&token(&TestKey::ed25519("k1"), &clock))
        .await
        .unwrap_err();
    assert!(
        matches!(error, VerifyError::KeysUnavailable(_)),
        "{error:?}"
    );
    let message = format!("503: {error}");
    assert!(
        message.contains("unavailable")
            && message.contains("could not connect to the key source")
            && message.contains("connection refused by 192.0.2.7:443"),
        "{message}"
    );
}

#[test]
fn an_unusable_inline_key_set_says_which_key_and_why() {
    let mut enc = TestKey::ed25519("enc-key").public_jwk();
    enc["use"] = json!("enc");
    let oct = json!({ "kty": "oct", "kid": "hmac-key", "k": "c2VjcmV0" });
    let message = StaticKeySource::from_json(json!({ "keys": [enc, oct] }).to_string())
        .unwrap_err()
        .to_string();
    for part in ["enc-key", "use is not sig", "hmac-key", "symmetric"] {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
    let empty = StaticKeySource::from_json(r#"{"keys":[]}"#)
        .unwrap_err()
        .to_string();
    assert!(empty.contains("no keys"), "{empty}");
}

/// `none`, HMAC and what the caller left off the allow-list are refused as not allowed; a
/// standard JOSE algorithm that jwkstash cannot verify has a code of its own.
#[tokio::test]
async fn algorithms_jwkstash_cannot_verify_have_their_own_code() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = builder(silent_source(), Arc::new(clock.clone()))
        .algorithms(&[jwkstash_jwks::Algorithm::RS256])
        .build()
        .unwrap();
    let code = async |alg: &str| {
        let token = key.sign_with_header(&json!({ "alg": alg, "kid": "k1" }), &claims(&clock));
        match verifier.verify::<Value>(&token).await {
            Err(VerifyError::InvalidToken(reason)) => (reason.code(), reason.to_string()),
            other => panic!("{alg}: {other:?}"),
        }
    };
    for alg in [
        "none", "HS256", "HS512", "eddsa", "ES256k", "NOPE", "EdDSA", "ES256",
    ] {
        assert_eq!(code(alg).await.0, "algorithm_not_allowed", "{alg}");
    }
    for alg in ["ES256K", "Ed448", "ESP256", "RSA-OAEP", "RSA1_5", "dir"] {
        let (code, message) = code(alg).await;
        assert_eq!(code, "algorithm_not_supported", "{alg}");
        assert!(message.contains(alg), "{message}");
    }
    assert_eq!(
        InvalidToken::AlgorithmNotAllowed.code(),
        "algorithm_not_allowed"
    );
}
