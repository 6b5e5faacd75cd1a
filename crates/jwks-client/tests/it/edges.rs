//! The exact edges of what is accepted: every algorithm a provider may sign with, the size limit
//! to the byte, `require_exp(false)`, fractional and out-of-range NumericDates, duplicates past
//! the small-set path, RSA sizes and exponents at their bounds, `kid` lengths, ambiguity within a
//! key family. Each one a user relies on, and each a mutant of the security core that survived.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::common::*;
use jwkstash_core::{Clock, ManualClock};
use jwkstash_jwks::testkit::{TestKey, b64};
use jwkstash_jwks::{Algorithm, InvalidToken, KeySet, MAX_KID_BYTES, SkipReason, Verifier};
use serde_json::{Value, json};

fn verifier_over(
    document: String,
    clock: &ManualClock,
    configure: impl FnOnce(jwkstash_jwks::VerifierBuilder) -> jwkstash_jwks::VerifierBuilder,
) -> Verifier {
    configure(builder(serving(document), Arc::new(clock.clone())))
        .build()
        .unwrap()
}

fn verifier_for(keys: &[&TestKey], clock: &ManualClock) -> Verifier {
    let document = jwkstash_jwks::testkit::jwks(keys).to_string();
    verifier_over(document, clock, |b| b)
}

async fn outcome(verifier: &Verifier, token: &str) -> Result<(), InvalidToken> {
    match verifier.verify::<Value>(token).await {
        Ok(_) => Ok(()),
        Err(jwkstash_jwks::VerifyError::InvalidToken(reason)) => Err(reason),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_supported_algorithm_verifies() {
    let clock = ManualClock::default();
    let cases = [
        TestKey::rsa("rs256"),
        TestKey::rsa("rs384").with_alg(Algorithm::RS384),
        TestKey::rsa("rs512").with_alg(Algorithm::RS512),
        TestKey::rsa("ps256").with_alg(Algorithm::PS256),
        TestKey::rsa("ps384").with_alg(Algorithm::PS384),
        TestKey::rsa("ps512").with_alg(Algorithm::PS512),
        TestKey::ec_p256("es256"),
        TestKey::ec_p384("es384"),
        TestKey::ed25519("eddsa"),
    ];
    for key in &cases {
        let verifier = verifier_for(&[key], &clock);
        assert_eq!(
            outcome(&verifier, &token(key, &clock)).await,
            Ok(()),
            "{:?}",
            key.alg()
        );
    }
}

#[tokio::test]
async fn the_algorithm_list_is_a_set() {
    let clock = ManualClock::default();
    let key = TestKey::ec_p256("k1");
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    // Listed twice, still allowed; another algorithm on the list does not remove it.
    for list in [
        vec![Algorithm::ES256, Algorithm::ES256],
        vec![Algorithm::ES256, Algorithm::RS256],
    ] {
        let verifier = verifier_over(document.clone(), &clock, |b| b.algorithms(&list));
        assert_eq!(
            outcome(&verifier, &token(&key, &clock)).await,
            Ok(()),
            "{list:?}"
        );
    }
    let without = verifier_over(document, &clock, |b| b.algorithms(&[Algorithm::RS256]));
    assert_eq!(
        outcome(&without, &token(&key, &clock)).await,
        Err(InvalidToken::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn the_size_limit_holds_to_the_byte() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let token = token(&key, &clock);
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    let exact = verifier_over(document.clone(), &clock, |b| b.max_token_bytes(token.len()));
    assert_eq!(outcome(&exact, &token).await, Ok(()));
    let one_short = verifier_over(document, &clock, |b| b.max_token_bytes(token.len() - 1));
    assert_eq!(
        outcome(&one_short, &token).await,
        Err(InvalidToken::TooLarge {
            limit: token.len() - 1
        })
    );
}

fn now(clock: &ManualClock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn exp_can_be_optional_fractional_and_never_out_of_range() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let with_exp = |exp: Value| {
        let mut claims = claims(&clock);
        if exp.is_null() {
            claims.as_object_mut().unwrap().remove("exp");
        } else {
            claims["exp"] = exp;
        }
        key.sign(&claims)
    };
    let strict = verifier_for(&[&key], &clock);
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    let lenient = verifier_over(document, &clock, |b| b.require_exp(false));
    assert_eq!(
        outcome(&strict, &with_exp(Value::Null)).await,
        Err(InvalidToken::MissingClaim("exp"))
    );
    assert_eq!(outcome(&lenient, &with_exp(Value::Null)).await, Ok(()));
    // Without `exp` required, a present `exp` is still checked.
    assert_eq!(
        outcome(&lenient, &with_exp(json!(now(&clock) - 3600))).await,
        Err(InvalidToken::Expired)
    );
    // Fractions are floored, so a fraction never extends a lifetime: with the 60 s leeway,
    // `exp` 58.5 s ago (floored to 59 s) is valid, 59.5 s ago (floored to 60 s) is not.
    let t = now(&clock) as f64;
    assert_eq!(outcome(&strict, &with_exp(json!(t - 58.5))).await, Ok(()));
    assert_eq!(
        outcome(&strict, &with_exp(json!(t - 59.5))).await,
        Err(InvalidToken::Expired)
    );
    assert_eq!(
        outcome(&strict, &with_exp(json!(t + 3600.25))).await,
        Ok(())
    );
    // Beyond u64 seconds, negative, or not finite: refused, never wrapped.
    for exp in [json!(1.9e19), json!(-1), json!(-0.5), json!(1e300)] {
        assert_eq!(
            outcome(&strict, &with_exp(exp.clone())).await,
            Err(InvalidToken::InvalidClaim("exp")),
            "{exp}"
        );
    }
    // The largest integer accepted is far in the future, and valid.
    assert_eq!(outcome(&strict, &with_exp(json!(u64::MAX))).await, Ok(()));
}

#[tokio::test]
async fn a_duplicate_is_found_in_a_header_with_many_members() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_for(&[&key], &clock);
    let mut members: Vec<String> = (0..40).map(|i| format!("\"m{i}\":{i}")).collect();
    members.push(r#""alg":"EdDSA","kid":"k1""#.to_owned());
    let fine = format!("{{{}}}", members.join(","));
    let claims = claims(&clock).to_string();
    assert_eq!(
        outcome(&verifier, &key.sign_raw(fine.as_bytes(), claims.as_bytes())).await,
        Ok(())
    );
    // The duplicate comes after the 16 names the small set holds.
    members.push(r#""m30":0"#.to_owned());
    let duplicated = format!("{{{}}}", members.join(","));
    assert!(matches!(
        outcome(
            &verifier,
            &key.sign_raw(duplicated.as_bytes(), claims.as_bytes())
        )
        .await,
        Err(InvalidToken::Malformed(_))
    ));
}

/// A JWK of an RSA "key" with a modulus of exactly `bits` bits (not a real key: only its size
/// is judged when the set is parsed) and exponent `e`.
fn rsa_jwk(bits: usize, e: &[u8]) -> Value {
    let mut n = vec![0xffu8; bits.div_ceil(8)];
    let spare = n.len() * 8 - bits;
    n[0] >>= spare;
    json!({ "kty": "RSA", "kid": "r", "n": b64(&n), "e": b64(e) })
}

fn parse_one(jwk: Value) -> Result<(), SkipReason> {
    let document = json!({ "keys": [jwk] }).to_string();
    let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
    match (usable.len(), skipped.first()) {
        (1, None) => Ok(()),
        (0, Some(skipped)) => Err(skipped.reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rsa_sizes_and_exponents_at_their_bounds() {
    let f4 = [0x01, 0x00, 0x01];
    assert_eq!(parse_one(rsa_jwk(2047, &f4)), Err(SkipReason::RsaSize));
    assert_eq!(parse_one(rsa_jwk(2048, &f4)), Ok(()));
    assert_eq!(parse_one(rsa_jwk(8192, &f4)), Ok(()));
    assert_eq!(parse_one(rsa_jwk(8193, &f4)), Err(SkipReason::RsaSize));
    // Leading zero bytes do not count.
    let mut padded = rsa_jwk(2047, &f4);
    let n = jwkstash_jwks::testkit::b64_decode(padded["n"].as_str().unwrap());
    padded["n"] = json!(b64([&[0u8, 0][..], &n].concat()));
    assert_eq!(parse_one(padded), Err(SkipReason::RsaSize));
    for (e, accepted) in [
        (&[3u8][..], true),
        (&[1], false),
        (&[2], false),
        (&[0x01, 0x00, 0x02], false),
        (&[0x01, 0x00, 0x00, 0x00, 0x01], false),
        (&[0xff, 0xff, 0xff, 0xff], true),
    ] {
        let reason = parse_one(rsa_jwk(2048, e));
        assert_eq!(reason.is_ok(), accepted, "e = {e:?}: {reason:?}");
        if !accepted {
            assert_eq!(reason, Err(SkipReason::RsaExponent));
        }
    }
}

#[test]
fn kid_lengths_and_symmetric_keys_at_their_bounds() {
    let key = TestKey::ed25519("k");
    let with_kid = |kid: String| {
        let mut jwk = key.public_jwk();
        jwk["kid"] = json!(kid);
        jwk
    };
    assert_eq!(parse_one(with_kid("k".repeat(MAX_KID_BYTES))), Ok(()));
    assert_eq!(
        parse_one(with_kid("k".repeat(MAX_KID_BYTES + 1))),
        Err(SkipReason::KidTooLong)
    );
    // `oct` by its type alone, or a secret `k` under another type: both symmetric.
    assert_eq!(
        parse_one(json!({ "kty": "oct", "kid": "s" })),
        Err(SkipReason::SymmetricKey)
    );
    let mut with_secret = key.public_jwk();
    with_secret["k"] = json!("c2VjcmV0");
    assert_eq!(parse_one(with_secret), Err(SkipReason::SymmetricKey));
}

#[tokio::test]
async fn two_ec_keys_of_different_curves_under_one_kid_are_ambiguous() {
    let clock = ManualClock::default();
    let (p256, p384) = (TestKey::ec_p256("shared"), TestKey::ec_p384("shared"));
    let verifier = verifier_for(&[&p256, &p384], &clock);
    assert_eq!(
        outcome(&verifier, &token(&p256, &clock)).await,
        Err(InvalidToken::AmbiguousKey)
    );
    // Keys of different families under one kid are not: the algorithm picks the family.
    let ed = TestKey::ed25519("shared");
    let verifier = verifier_for(&[&p256, &ed], &clock);
    assert_eq!(outcome(&verifier, &token(&p256, &clock)).await, Ok(()));
    assert_eq!(outcome(&verifier, &token(&ed, &clock)).await, Ok(()));
}

#[test]
fn what_a_user_reads_names_the_key_and_the_reason() {
    let key = TestKey::ec_p384("named");
    let set = KeySet::parse(jwkstash_jwks::testkit::jwks(&[&key]).to_string()).unwrap();
    let parsed = &set.keys()[0];
    assert_eq!(parsed.kid(), Some("named"));
    assert_eq!(parsed.algorithm(), Some(Algorithm::ES384));
    assert_eq!(parsed.kind().to_string(), "EC P-384");
    assert_eq!(
        SkipReason::RsaSize.to_string(),
        "RSA modulus size out of range"
    );
}

/// Survivors of the mutation run of 2026-11-30 (scripts/mutants.sh), each a behaviour a user
/// relies on.
#[tokio::test]
async fn an_algorithm_off_the_list_is_refused_whatever_else_is_listed() {
    let clock = ManualClock::default();
    let key = TestKey::rsa("k1").with_alg(Algorithm::RS384);
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    let listed = verifier_over(document.clone(), &clock, |b| {
        b.algorithms(&[Algorithm::RS256, Algorithm::ES256])
    });
    assert_eq!(
        outcome(&listed, &token(&key, &clock)).await,
        Err(InvalidToken::AlgorithmNotAllowed)
    );
    let with_it = verifier_over(document, &clock, |b| {
        b.algorithms(&[Algorithm::RS256, Algorithm::RS384])
    });
    assert_eq!(outcome(&with_it, &token(&key, &clock)).await, Ok(()));
}

#[test]
fn algorithms_print_and_parse_by_their_jose_names() {
    let all = [
        (Algorithm::RS256, "RS256"),
        (Algorithm::RS384, "RS384"),
        (Algorithm::RS512, "RS512"),
        (Algorithm::PS256, "PS256"),
        (Algorithm::PS384, "PS384"),
        (Algorithm::PS512, "PS512"),
        (Algorithm::ES256, "ES256"),
        (Algorithm::ES384, "ES384"),
        (Algorithm::EdDSA, "EdDSA"),
    ];
    for (alg, name) in all {
        assert_eq!((alg.to_string().as_str(), alg.as_str()), (name, name));
        assert_eq!(name.parse::<Algorithm>(), Ok(alg));
        assert_eq!(serde_json::to_value(alg).unwrap(), json!(name));
    }
}

#[tokio::test]
async fn an_exp_of_exactly_two_to_the_64_is_out_of_range() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_for(&[&key], &clock);
    let mut payload = claims(&clock);
    payload.as_object_mut().unwrap().remove("exp");
    // 2^64 as a JSON integer: not a u64, and exactly the first f64 past u64::MAX.
    let raw = payload
        .to_string()
        .replacen('{', "{\"exp\":18446744073709551616,", 1);
    let header = json!({ "alg": "EdDSA", "kid": "k1" }).to_string();
    let token = key.sign_raw(header.as_bytes(), raw.as_bytes());
    assert_eq!(
        outcome(&verifier, &token).await,
        Err(InvalidToken::InvalidClaim("exp"))
    );
}

#[tokio::test]
async fn an_unchecked_audience_must_still_be_valid_json_in_full() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    let any = verifier_over(document, &clock, |b| b.any_audience());
    let with_aud = |aud: &str| {
        let payload =
            claims(&clock)
                .to_string()
                .replacen("\"aud\":\"api\"", &format!("\"aud\":{aud}"), 1);
        assert!(payload.contains(aud), "{payload}");
        let header = json!({ "alg": "EdDSA", "kid": "k1" }).to_string();
        key.sign_raw(header.as_bytes(), payload.as_bytes())
    };
    assert_eq!(outcome(&any, &with_aud("\"anyone\"")).await, Ok(()));
    assert_eq!(
        outcome(&any, &with_aud(r#"{"x":1,"x":2}"#)).await,
        Err(InvalidToken::InvalidClaim("aud"))
    );
}

#[tokio::test]
async fn a_member_with_an_empty_name_is_not_a_duplicate() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier_for(&[&key], &clock);
    let payload = claims(&clock).to_string().replacen('{', "{\"\":1,", 1);
    let header = json!({ "alg": "EdDSA", "kid": "k1", "": "x" }).to_string();
    let token = key.sign_raw(header.as_bytes(), payload.as_bytes());
    assert_eq!(outcome(&verifier, &token).await, Ok(()));
    let twice = claims(&clock)
        .to_string()
        .replacen('{', "{\"\":1,\"\":2,", 1);
    let token = key.sign_raw(header.as_bytes(), twice.as_bytes());
    assert!(matches!(
        outcome(&verifier, &token).await,
        Err(InvalidToken::Malformed(_))
    ));
}

#[tokio::test]
async fn only_the_application_prefix_is_dropped_from_a_required_typ() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    let verifier = verifier_over(document, &clock, |b| b.require_typ("at+jwt"));
    let with_typ = |typ: &str| {
        let header = json!({ "alg": "EdDSA", "kid": "k1", "typ": typ });
        key.sign_with_header(&header, &claims(&clock))
    };
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        assert_eq!(outcome(&verifier, &with_typ(typ)).await, Ok(()), "{typ}");
    }
    // Twelve other characters in front are not the `application/` prefix.
    for typ in ["application-at+jwt", "xxxxxxxxxxxxat+jwt", "jwt", "at+jwt "] {
        assert_eq!(
            outcome(&verifier, &with_typ(typ)).await,
            Err(InvalidToken::InvalidType),
            "{typ}"
        );
    }
}
