//! What strict JOSE parsers refuse, refused here too, with a genuine signature on every token:
//! JSON that is not valid in full (even in members nobody reads), JWE members in a JWS header,
//! a `typ` that is not a string or not the required one, an `iat` in the future, EC keys off
//! their curve. Each judgement call is in SECURITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{Clock, ManualClock, MockKeySource};
use jwkstash_jwks::testkit::{TestKey, b64};
use jwkstash_jwks::{InvalidToken, Issuers, KeySet, SkipReason, Verifier, VerifyError};
use serde::Deserialize;
use serde_json::{Value, json};

fn verifier_with(
    key: &TestKey,
    clock: &ManualClock,
    configure: impl FnOnce(jwkstash_jwks::VerifierBuilder) -> jwkstash_jwks::VerifierBuilder,
) -> Verifier {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(&[key]);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    configure(builder(source, Arc::new(clock.clone())))
        .build()
        .unwrap()
}

/// Only `sub`: every other member of the payload is one the caller's type does not read.
#[derive(Debug, Deserialize)]
struct OnlySub {
    #[allow(dead_code)]
    sub: String,
}

async fn outcome(verifier: &Verifier, token: &str) -> Result<(), InvalidToken> {
    match verifier.verify::<OnlySub>(token).await {
        Ok(_) => Ok(()),
        Err(VerifyError::InvalidToken(reason)) => Err(reason),
        Err(other) => panic!("keys unavailable: {other:?}"),
    }
}

fn claims_json(clock: &ManualClock) -> String {
    claims(clock).to_string()
}

/// `claims` with `member` (raw JSON text) added before the closing brace.
fn with_member(claims: &str, member: &str) -> Vec<u8> {
    let mut bytes = claims.as_bytes()[..claims.len() - 1].to_vec();
    bytes.extend_from_slice(b",");
    bytes.extend_from_slice(member.as_bytes());
    bytes.extend_from_slice(b"}");
    bytes
}

#[tokio::test]
async fn header_and_payload_are_valid_json_in_full_even_where_unread() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_with(&key, &clock, |b| b);
    let header = br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#;
    let claims = claims_json(&clock);
    assert_eq!(
        outcome(&verifier, &key.sign_raw(header, claims.as_bytes())).await,
        Ok(())
    );

    // Invalid UTF-8 in an unread header member, with a genuine signature.
    let bad_header = b"{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"k1\",\"x\":\"\xff\xfe\"}";
    assert!(matches!(
        outcome(&verifier, &key.sign_raw(bad_header, claims.as_bytes())).await,
        Err(InvalidToken::Malformed(_))
    ));
    let deep = format!("\"deep\":{}{}", "[".repeat(1000), "]".repeat(1000));
    let huge_number = format!("\"n\":{}", "9".repeat(5000));
    let payload_cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8", {
            let mut bytes = with_member(&claims, "\"x\":\"..\"");
            let at = bytes.len() - 3;
            bytes[at] = 0xff;
            bytes
        }),
        (
            "a lone surrogate escape",
            with_member(&claims, r#""x":"\ud800""#),
        ),
        ("1,000 levels deep", with_member(&claims, &deep)),
        ("a 5,000-digit number", with_member(&claims, &huge_number)),
        (
            "a number beyond a double",
            with_member(&claims, r#""n":1e999"#),
        ),
        (
            "a duplicate inside an unread object",
            with_member(&claims, r#""o":{"a":1,"a":2}"#),
        ),
        (
            "a duplicate registered claim",
            with_member(&claims, r#""exp":1"#),
        ),
        (
            "a duplicate private claim",
            with_member(&claims, r#""sub":"other""#),
        ),
    ];
    for (case, payload) in payload_cases {
        let token = key.sign_raw(header, &payload);
        assert!(
            matches!(
                outcome(&verifier, &token).await,
                Err(InvalidToken::Malformed(_))
            ),
            "{case} was accepted"
        );
    }
    // Within the limits: 100 levels, long but finite numbers, escapes.
    let fine = with_member(
        &claims,
        &format!(
            r#""deep":{}{},"n":1.5e300,"e":"\u00e9\n""#,
            "[".repeat(100),
            "]".repeat(100)
        ),
    );
    assert_eq!(
        outcome(&verifier, &key.sign_raw(header, &fine)).await,
        Ok(())
    );
}

#[tokio::test]
async fn jwe_members_in_a_jws_header_are_refused() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_with(&key, &clock, |b| b);
    for member in ["enc", "zip"] {
        let header = json!({ "alg": "EdDSA", "kid": "k1", member: "A256GCM" });
        let token = key.sign_with_header(&header, &claims(&clock));
        assert!(
            matches!(
                outcome(&verifier, &token).await,
                Err(InvalidToken::Malformed(_))
            ),
            "{member}"
        );
    }
}

#[tokio::test]
async fn typ_must_be_a_string_and_the_required_one_when_required() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let token_with_typ = |typ: Value| {
        let mut header = json!({ "alg": "EdDSA", "kid": "k1" });
        if !typ.is_null() {
            header["typ"] = typ;
        }
        key.sign_with_header(&header, &claims(&clock))
    };
    let any = verifier_with(&key, &clock, |b| b);
    for typ in [
        json!("JWT"),
        json!("at+jwt"),
        json!("anything"),
        Value::Null,
    ] {
        assert_eq!(
            outcome(&any, &token_with_typ(typ.clone())).await,
            Ok(()),
            "{typ}"
        );
    }
    for typ in [json!(1), json!(["JWT"]), json!({}), json!(true)] {
        assert_eq!(
            outcome(&any, &token_with_typ(typ.clone())).await,
            Err(InvalidToken::InvalidType),
            "{typ}"
        );
    }
    let access = verifier_with(&key, &clock, |b| b.require_typ("at+jwt"));
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+jwt",
    ] {
        assert_eq!(
            outcome(&access, &token_with_typ(json!(typ))).await,
            Ok(()),
            "{typ}"
        );
    }
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!("application/jwt"),
        json!("at+jwt "),
        Value::Null,
    ] {
        assert_eq!(
            outcome(&access, &token_with_typ(typ.clone())).await,
            Err(InvalidToken::InvalidType),
            "{typ}"
        );
    }
    assert!(
        builder(silent_source(), Arc::new(clock.clone()))
            .require_typ("")
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn an_iat_in_the_future_is_refused_unless_allowed() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with_iat = |iat: u64| {
        let mut claims = claims(&clock);
        claims["iat"] = json!(iat);
        key.sign(&claims)
    };
    let strict = verifier_with(&key, &clock, |b| b);
    // The leeway (60 s) holds on the boundary.
    assert_eq!(outcome(&strict, &with_iat(now + 60)).await, Ok(()));
    assert_eq!(
        outcome(&strict, &with_iat(now + 61)).await,
        Err(InvalidToken::IssuedInFuture)
    );
    let lenient = verifier_with(&key, &clock, |b| b.accept_future_iat(true));
    assert_eq!(outcome(&lenient, &with_iat(now + 3600)).await, Ok(()));
}

#[test]
fn ec_keys_off_their_curve_are_refused_when_the_set_is_parsed() {
    for key in [TestKey::ec_p256("ec"), TestKey::ec_p384("ec")] {
        let mut jwk = key.public_jwk();
        let good = json!({ "keys": [jwk.clone()] }).to_string();
        assert_eq!(KeySet::parse(good).unwrap().keys().len(), 1);
        // Flip the last bit of y: right length, not a point on the curve.
        let y = jwk["y"].as_str().unwrap().to_owned();
        let mut bytes = jwkstash_jwks::testkit::b64_decode(&y);
        *bytes.last_mut().unwrap() ^= 1;
        jwk["y"] = json!(b64(&bytes));
        let (usable, skipped) =
            KeySet::explain(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
        assert!(usable.is_empty());
        assert_eq!(skipped[0].reason, SkipReason::PointNotOnCurve);
        assert_eq!(
            skipped[0].reason.to_string(),
            "the point is not on the curve"
        );
    }
}

#[tokio::test]
async fn the_registry_has_its_own_token_size_limit() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let issuers = Issuers::new().max_token_bytes(64);
    issuers.insert(verifier_with(&key, &clock, |b| b));
    let token = key.sign(&claims(&clock));
    assert!(token.len() > 64);
    assert!(matches!(
        issuers.verify::<Value>(&token).await,
        Err(VerifyError::InvalidToken(InvalidToken::TooLarge {
            limit: 64
        }))
    ));
    let roomy = Issuers::new().max_token_bytes(token.len());
    roomy.insert(verifier_with(&key, &clock, |b| b));
    roomy.verify::<Value>(&token).await.unwrap();
    let _ = Duration::ZERO;
}
