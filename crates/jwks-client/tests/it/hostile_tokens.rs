//! Hostile tokens: nothing in a token, its header or its claims makes the verifier trust a key
//! it should not, fetch a URL it was not given, panic, or spend unbounded memory or time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jsonwebtoken::{EncodingKey, Header};
use jwkstash_core::{Clock, ManualClock, MockKeySource};
use jwkstash_jwks::testkit::{Idp, IdpBuilder, TestKey, b64};
use jwkstash_jwks::{InvalidToken, RefreshError, Verifier, VerifyError};
use serde_json::{Value, json};

/// A verifier over a fixed set of keys, with a manual clock.
fn verifier_for(keys: &[&TestKey], clock: &ManualClock) -> Verifier {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(keys);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

/// A verifier whose key source panics if asked: for checks that must happen first.
fn verifier_without_keys(clock: &ManualClock) -> Verifier {
    builder(silent_source(), Arc::new(clock.clone()))
        .build()
        .unwrap()
}

async fn refusal(verifier: &Verifier, token: &str) -> InvalidToken {
    let outcome = tokio::time::timeout(Duration::from_secs(5), verifier.verify::<Value>(token))
        .await
        .expect("a verification hung");
    match outcome {
        Err(VerifyError::InvalidToken(reason)) => reason,
        other => panic!("expected a refusal of {:.80}, got {other:?}", token),
    }
}

fn raw(header: &str, payload: &str, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
}

#[tokio::test]
async fn alg_none_in_any_casing_is_refused_before_any_lookup() {
    let clock = ManualClock::default();
    let verifier = verifier_without_keys(&clock);
    let payload = claims(&clock).to_string();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = json!({ "alg": alg, "kid": "k1" }).to_string();
        for signature in [&b"sig"[..], b""] {
            let token = if signature.is_empty() {
                format!("{}.{}.", b64(&header), b64(&payload))
            } else {
                raw(&header, &payload, signature)
            };
            let reason = refusal(&verifier, &token).await;
            assert!(
                matches!(
                    reason,
                    InvalidToken::AlgorithmNotAllowed | InvalidToken::Malformed(_)
                ),
                "{alg}: {reason:?}"
            );
        }
    }
    let header = json!({ "kid": "k1" }).to_string();
    assert!(matches!(
        refusal(&verifier, &raw(&header, &payload, b"s")).await,
        InvalidToken::Malformed(_)
    ));
}

#[tokio::test]
async fn hmac_with_the_public_key_as_secret_is_refused() {
    let clock = ManualClock::default();
    let key = TestKey::rsa("k1");
    let verifier = verifier_without_keys(&clock);
    let jwk = key.public_jwk();
    let n = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jwk["n"].as_str().unwrap(),
    )
    .unwrap();
    let der = key.public_key_der();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    let secrets: Vec<Vec<u8>> = vec![
        n,
        der,
        pem.into_bytes(),
        jwk.to_string().into_bytes(),
        jwk["n"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        for secret in &secrets {
            let mut header = Header::new(alg);
            header.kid = Some("k1".into());
            let token = jsonwebtoken::encode(
                &header,
                &claims(&clock),
                &EncodingKey::from_secret(secret).unwrap(),
            )
            .unwrap();
            assert_eq!(
                refusal(&verifier, &token).await,
                InvalidToken::AlgorithmNotAllowed,
                "{alg:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_algorithm_must_fit_the_key() {
    let clock = ManualClock::default();
    let rsa = TestKey::rsa("rsa");
    let p384 = TestKey::ec_p384("p384");
    let p256 = TestKey::ec_p256("p256");
    let mut unpinned_p384 = p384.public_jwk();
    unpinned_p384.as_object_mut().unwrap().remove("alg");
    let body = json!({ "keys": [rsa.public_jwk(), unpinned_p384, p256.public_jwk()] }).to_string();
    let source = serving(body);
    let verifier = builder(source, Arc::new(clock.clone())).build().unwrap();
    let claims = claims(&clock);
    let sign_as = |key: &TestKey, alg: &str, kid: &str| {
        key.sign_with_header(&json!({ "alg": alg, "kid": kid }), &claims)
    };
    // The JWK pins RS256: PS256 and RS512 under its kid are refused before the signature.
    let cases = [
        (
            sign_as(&rsa, "PS256", "rsa"),
            InvalidToken::AlgorithmMismatch,
        ),
        (
            sign_as(&rsa, "RS512", "rsa"),
            InvalidToken::AlgorithmMismatch,
        ),
        // No alg on the JWK: the curve decides. ES256 with a P-384 key is refused.
        (
            sign_as(&p384, "ES256", "p384"),
            InvalidToken::AlgorithmMismatch,
        ),
        (sign_as(&rsa, "ES256", "p256"), InvalidToken::BadSignature),
        (
            sign_as(&p256, "RS256", "p256"),
            InvalidToken::AlgorithmMismatch,
        ),
        (
            sign_as(&p256, "EdDSA", "rsa"),
            InvalidToken::AlgorithmMismatch,
        ),
        (
            sign_as(&p256, "ES256K", "p256"),
            InvalidToken::AlgorithmNotSupported("ES256K"),
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(refusal(&verifier, &token).await, expected);
    }
    // And the fitting ones pass.
    verifier
        .verify::<Value>(&sign_as(&p384, "ES384", "p384"))
        .await
        .unwrap();
    verifier
        .verify::<Value>(&sign_as(&rsa, "RS256", "rsa"))
        .await
        .unwrap();
}

#[tokio::test]
async fn linked_and_embedded_keys_are_never_followed() {
    let clock = ManualClock::default();
    let ours = IdpBuilder::default()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let attacker = Idp::builder()
        .key(TestKey::rsa("key-1"))
        .start()
        .await
        .unwrap();
    let verifier = Verifier::builder()
        .key_source(ours.key_source())
        .issuer(ours.issuer())
        .audience(ours.audience())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let forger = attacker.signing_key();
    let claims = ours.claims();
    let headers = [
        json!({ "alg": "RS256", "kid": "key-1", "jku": attacker.jwks_url() }),
        json!({ "alg": "RS256", "kid": "evil", "jku": attacker.jwks_url() }),
        json!({ "alg": "RS256", "kid": "key-1", "x5u": format!("{}/cert.pem", attacker.issuer()) }),
        json!({ "alg": "RS256", "kid": "key-1", "jwk": forger.public_jwk() }),
        json!({ "alg": "RS256", "jwk": forger.public_jwk() }),
        json!({ "alg": "RS256", "kid": "key-1", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"] }),
    ];
    for header in headers {
        let token = forger.sign_with_header(&header, &claims);
        let outcome = verifier.verify::<Value>(&token).await;
        let refused = matches!(
            outcome,
            Err(VerifyError::InvalidToken(
                InvalidToken::BadSignature | InvalidToken::UnknownKid
            ))
        );
        // A fresh token of a kid the set lacks, while the cooldown holds the refetch back, is
        // answered 503: it might be of a key published since.
        let held_back = header["kid"] == "evil"
            && matches!(
                &outcome,
                Err(VerifyError::KeysUnavailable(unavailable))
                    if matches!(unavailable.cause(), RefreshError::KidRefetchCoolingDown { .. })
            );
        assert!(refused || held_back, "{header}: {outcome:?}");
    }
    assert_eq!(attacker.jwks_requests(), 0, "a linked URL was fetched");
    assert_eq!(attacker.discovery_requests(), 0);
    // Our own token still verifies.
    verifier.verify::<Value>(&ours.mint()).await.unwrap();
}

#[tokio::test]
async fn crit_is_refused_whatever_it_names() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_without_keys(&clock);
    for crit in [
        json!(["exp"]),
        json!([]),
        json!(["b64", "b64"]),
        json!(["x-unknown"]),
        json!("exp"),
        json!(null),
    ] {
        let token = key.sign_with_header(
            &json!({ "alg": "EdDSA", "kid": "k1", "crit": crit }),
            &claims(&clock),
        );
        assert_eq!(
            refusal(&verifier, &token).await,
            InvalidToken::UnsupportedCritical,
            "{crit}"
        );
    }
}

#[tokio::test]
async fn time_claims_of_the_wrong_type_are_refused() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_for(&[&key], &clock);
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for claim in ["exp", "nbf", "iat"] {
        for bad in [
            json!("1900000000"),
            json!(true),
            json!(null),
            json!([now + 60]),
            json!(-5),
            json!({ "v": 1 }),
            json!(-0.5),
        ] {
            let mut payload = claims(&clock);
            payload[claim] = bad.clone();
            let reason = refusal(&verifier, &key.sign(&payload)).await;
            assert_eq!(
                reason,
                InvalidToken::InvalidClaim(claim_name(claim)),
                "{claim}: {bad}"
            );
        }
        // 1e309 is out of any number's range.
        let payload = format!(
            r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"{claim}":1e309}}"#,
            now + 60
        );
        let token = key.sign_raw(br#"{"alg":"EdDSA","kid":"k1"}"#, payload.as_bytes());
        let reason = refusal(&verifier, &token).await;
        assert!(
            matches!(
                reason,
                InvalidToken::InvalidClaim(_) | InvalidToken::Malformed(_)
            ),
            "{claim}: {reason:?}"
        );
    }
}

fn claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        _ => "iat",
    }
}

#[tokio::test]
async fn leeway_boundaries_are_exact_and_exp_is_required() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_for(&[&key], &clock);
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with = |changes: Value| {
        let mut payload = claims(&clock);
        for (name, value) in changes.as_object().unwrap() {
            payload[name] = value.clone();
        }
        key.sign(&payload)
    };
    // Leeway 60 s: valid while now < exp + 60, and from now + 60 >= nbf.
    verifier
        .verify::<Value>(&with(json!({ "exp": now - 59 })))
        .await
        .unwrap();
    assert_eq!(
        refusal(&verifier, &with(json!({ "exp": now - 60 }))).await,
        InvalidToken::Expired
    );
    verifier
        .verify::<Value>(&with(json!({ "nbf": now + 60 })))
        .await
        .unwrap();
    assert_eq!(
        refusal(&verifier, &with(json!({ "nbf": now + 61 }))).await,
        InvalidToken::NotYetValid
    );
    let mut no_exp = claims(&clock);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        refusal(&verifier, &key.sign(&no_exp)).await,
        InvalidToken::MissingClaim("exp")
    );

    // A maximum lifetime, when configured.
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(&[&key]);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    let strict = builder(source, Arc::new(clock.clone()))
        .max_token_lifetime(Duration::from_secs(3600))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    strict
        .verify::<Value>(&with(json!({ "iat": now, "exp": now + 3600 })))
        .await
        .unwrap();
    assert_eq!(
        refusal(&strict, &with(json!({ "iat": now, "exp": now + 3601 }))).await,
        InvalidToken::LifetimeTooLong
    );
    assert_eq!(
        refusal(&strict, &with(json!({ "exp": now }))).await,
        InvalidToken::Expired
    );
}

#[tokio::test]
async fn issuer_and_audience_are_exact() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_for(&[&key], &clock);
    let with = |name: &str, value: Value| {
        let mut payload = claims(&clock);
        payload[name] = value;
        key.sign(&payload)
    };
    for iss in [
        json!(format!("{ISSUER}x")),
        json!("https://idp.test"),
        json!("https://idp.test/.evil"),
        json!("HTTPS://IDP.TEST/"),
        json!(1),
        json!([ISSUER]),
        json!(null),
    ] {
        assert_eq!(
            refusal(&verifier, &with("iss", iss.clone())).await,
            InvalidToken::InvalidIssuer,
            "{iss}"
        );
    }
    for aud in [
        json!([]),
        json!([""]),
        json!(["other"]),
        json!(""),
        json!(null),
        json!([AUDIENCE, 7]),
        json!({ "aud": AUDIENCE }),
    ] {
        assert_eq!(
            refusal(&verifier, &with("aud", aud.clone())).await,
            InvalidToken::InvalidAudience,
            "{aud}"
        );
    }
    verifier
        .verify::<Value>(&with("aud", json!(AUDIENCE)))
        .await
        .unwrap();
    verifier
        .verify::<Value>(&with("aud", json!(["other", AUDIENCE])))
        .await
        .unwrap();
}

#[tokio::test]
async fn keys_are_bound_to_their_issuer() {
    let clock = ManualClock::default();
    // Two providers publish different keys under the same kid.
    let (key_a, key_b) = (TestKey::ec_p256("shared"), TestKey::ec_p256("shared"));
    let shared_tier: jwkstash_jwks::KeySetTier = Arc::new(
        jwkstash_memory::MemoryCache::builder()
            .clock(Arc::new(clock.clone()))
            .build(),
    );
    let verifier = |issuer: &str, key: &TestKey| {
        let mut source = MockKeySource::new();
        // Even the same URL (a shared multi-tenant endpoint) does not mix the issuers' keys.
        source.expect_id().return_const(JWKS_URL.to_owned());
        let answer = modified(&[key]);
        source.expect_fetch().returning(move |_| Ok(answer.clone()));
        Verifier::builder()
            .key_source(source)
            .issuer(issuer)
            .audience(AUDIENCE)
            .clock(Arc::new(clock.clone()))
            .near_tier(Arc::clone(&shared_tier))
            .build()
            .unwrap()
    };
    let (a, b) = (
        verifier("https://a.test/", &key_a),
        verifier("https://b.test/", &key_b),
    );
    let mut claims_b = claims(&clock);
    claims_b["iss"] = json!("https://b.test/");
    // iss = B, signed with A's key.
    let forged = key_a.sign(&claims_b);
    assert_eq!(refusal(&b, &forged).await, InvalidToken::BadSignature);
    assert_eq!(refusal(&a, &forged).await, InvalidToken::InvalidIssuer);
    b.verify::<Value>(&key_b.sign(&claims_b)).await.unwrap();
}

#[tokio::test]
async fn non_compact_forms_are_refused() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_without_keys(&clock);
    let good = key.sign(&claims(&clock));
    let parts: Vec<&str> = good.split('.').collect();
    let json_serialization = json!({
        "payload": parts[1],
        "signatures": [{ "protected": parts[0], "signature": parts[2] }],
    })
    .to_string();
    let standard_alphabet = format!(
        "{}.{}.{}+/",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 2]
    );
    let cases = [
        json_serialization,
        format!("{}.{}.{}.{}.{}", parts[0], "enc", "iv", "ct", "tag"),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.x"),
        format!("{good}."),
        format!(".{good}"),
        format!("{good}=="),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        standard_alphabet,
        format!(" {good}"),
        format!("{good}\n"),
        format!("{}.{} .{}", parts[0], parts[1], parts[2]),
        good.replace('.', ". "),
        String::new(),
        "..".into(),
    ];
    for token in cases {
        let reason = refusal(&verifier, &token).await;
        assert!(
            matches!(reason, InvalidToken::Malformed(_)),
            "{token:?}: {reason:?}"
        );
    }
    // Duplicate members: in the header (before any lookup) and in the payload.
    let duplicate_header = key.sign_raw(
        br#"{"alg":"EdDSA","kid":"k1","kid":"k2"}"#,
        claims(&clock).to_string().as_bytes(),
    );
    assert!(matches!(
        refusal(&verifier, &duplicate_header).await,
        InvalidToken::Malformed(_)
    ));
    let with_keys = verifier_for(&[&key], &clock);
    let payload = format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":1,"exp":99999999999}}"#);
    let duplicate_payload = key.sign_raw(br#"{"alg":"EdDSA","kid":"k1"}"#, payload.as_bytes());
    assert!(matches!(
        refusal(&with_keys, &duplicate_payload).await,
        InvalidToken::Malformed(_)
    ));
}

#[tokio::test]
async fn size_is_checked_before_any_decoding() {
    let clock = ManualClock::default();
    let verifier = verifier_without_keys(&clock);
    let dots = ".".repeat(1024 * 1024);
    assert_eq!(
        refusal(&verifier, &dots).await,
        InvalidToken::TooLarge { limit: 16 * 1024 }
    );
    let key = TestKey::ed25519("k1");
    let mut big = claims(&clock);
    big["padding"] = json!("x".repeat(20 * 1024));
    assert_eq!(
        refusal(&verifier, &key.sign(&big)).await,
        InvalidToken::TooLarge { limit: 16 * 1024 }
    );
    let small = builder(silent_source(), Arc::new(clock.clone()))
        .max_token_bytes(64)
        .build()
        .unwrap();
    assert_eq!(
        refusal(&small, &key.sign(&claims(&clock))).await,
        InvalidToken::TooLarge { limit: 64 }
    );
}

#[tokio::test]
async fn a_token_without_kid_costs_at_most_one_signature_check() {
    let clock = ManualClock::default();
    let keys: Vec<TestKey> = (0..100)
        .map(|i| TestKey::ed25519(&format!("k{i}")))
        .collect();
    let verifier = verifier_for(&keys.iter().collect::<Vec<_>>(), &clock);
    // Many keys fit EdDSA: no key is tried at all.
    let no_kid = keys[7].sign_with_header(&json!({ "alg": "EdDSA" }), &claims(&clock));
    for _ in 0..10 {
        assert_eq!(refusal(&verifier, &no_kid).await, InvalidToken::MissingKid);
    }
    assert_eq!(verifier.stats().signature_checks, 0);
    // One key of the family: exactly one check per token, forged or not.
    let single = verifier_for(&[&keys[0], &TestKey::ec_p256("ec")], &clock);
    let forged = keys[1].sign_with_header(&json!({ "alg": "EdDSA" }), &claims(&clock));
    assert_eq!(refusal(&single, &forged).await, InvalidToken::BadSignature);
    let genuine = keys[0].sign_with_header(&json!({ "alg": "EdDSA" }), &claims(&clock));
    single.verify::<Value>(&genuine).await.unwrap();
    assert_eq!(single.stats().signature_checks, 2);
}
