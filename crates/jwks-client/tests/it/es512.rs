//! ES512 (ECDSA on P-521 with SHA-512), which every JOSE library and oidc-provider sign with:
//! P-521 keys given by their members or as an `x5c` certificate, tokens with genuine signatures
//! made by aws-lc (jsonwebtoken has no ES512; jwkstash verifies it with aws-lc too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;

use crate::common::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jwkstash_core::ManualClock;
use jwkstash_jwks::testkit::{TestKey, b64, b64_decode};
use jwkstash_jwks::{
    Algorithm, DEFAULT_ALGORITHMS, InvalidToken, KeyKind, KeySet, SkipReason, Verifier, VerifyError,
};
use serde_json::{Value, json};

/// A P-521 signing key (aws-lc), with its kid.
struct P521 {
    kid: String,
    pair: EcdsaKeyPair,
}

impl P521 {
    fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P521_SHA512_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            pair,
        }
    }

    /// The uncompressed point: 0x04, x, y (66 bytes each).
    fn point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public JWK, `alg: ES512` as jose and oidc-provider publish it.
    fn jwk(&self) -> Value {
        let point = self.point();
        assert_eq!(point.len(), 1 + 2 * 66);
        json!({
            "kty": "EC", "crv": "P-521", "kid": self.kid, "use": "sig", "alg": "ES512",
            "x": b64(&point[1..67]), "y": b64(&point[67..]),
        })
    }

    /// The JWS signature of `message`: r and s, 66 bytes each.
    fn signature(&self, message: &[u8]) -> Vec<u8> {
        let signature = self.pair.sign(&SystemRandom::new(), message).unwrap();
        assert_eq!(signature.as_ref().len(), 132);
        signature.as_ref().to_vec()
    }

    /// A compact JWS of `header` and `claims`.
    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.signature(message.as_bytes());
        format!("{message}.{}", b64(signature))
    }

    /// A token with `alg: ES512` and this key's kid.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({ "alg": "ES512", "kid": self.kid }), claims)
    }
}

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

/// `token` with its signature segment replaced by `signature`.
fn with_signature(token: &str, signature: &[u8]) -> String {
    let (message, _) = token.rsplit_once('.').unwrap();
    format!("{message}.{}", b64(signature))
}

#[tokio::test]
async fn es512_tokens_verify_against_p521_keys() {
    let clock = ManualClock::default();
    assert!(DEFAULT_ALGORITHMS.contains(&Algorithm::ES512));
    let (pinned, unpinned) = (P521::generate("p521"), P521::generate("p521-any"));
    let mut unpinned_jwk = unpinned.jwk();
    unpinned_jwk.as_object_mut().unwrap().remove("alg");
    let rsa = TestKey::rsa("rsa");
    let verifier = verifier_over(vec![pinned.jwk(), unpinned_jwk, rsa.public_jwk()], &clock);
    let set = verifier.key_set().await.unwrap();
    assert!(set.skipped().is_empty());
    assert_eq!(set.keys()[0].kind(), KeyKind::EcP521);
    assert_eq!(set.keys()[0].algorithm(), Some(Algorithm::ES512));
    assert_eq!(KeyKind::EcP521.to_string(), "EC P-521");
    for key in [&pinned, &unpinned] {
        assert_eq!(outcome(&verifier, &key.sign(&claims(&clock))).await, Ok(()));
    }
    // RS256 on the same verifier, through jsonwebtoken as before.
    assert_eq!(outcome(&verifier, &token(&rsa, &clock)).await, Ok(()));
    assert_eq!(verifier.stats().verified, 3);
}

#[tokio::test]
async fn forged_and_misshapen_es512_signatures_are_bad_signatures() {
    let clock = ManualClock::default();
    let key = P521::generate("p521");
    let verifier = verifier_over(vec![key.jwk()], &clock);
    let genuine = key.sign(&claims(&clock));
    assert_eq!(outcome(&verifier, &genuine).await, Ok(()));
    let signature = b64_decode(genuine.rsplit_once('.').unwrap().1);
    // Another P-521 key under the same kid.
    let forger = P521::generate("p521");
    // The payload changed under the genuine signature.
    let (header, _) = genuine.split_once('.').unwrap();
    let mut richer = claims(&clock);
    richer["sub"] = json!("admin");
    let tampered = format!(
        "{header}.{}.{}",
        b64(richer.to_string()),
        genuine.rsplit_once('.').unwrap().1
    );
    // The signature one byte short, one byte long, r and s swapped, all zero (CVE-2022-21449),
    // and DER-encoded instead of fixed-width.
    let mut swapped = signature[66..].to_vec();
    swapped.extend_from_slice(&signature[..66]);
    let der = {
        let der_pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
            key.pair.to_pkcs8v1().unwrap().as_ref(),
        )
        .unwrap();
        let message = genuine.rsplit_once('.').unwrap().0;
        der_pair
            .sign(&SystemRandom::new(), message.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    };
    for (what, token) in [
        ("forger", forger.sign(&claims(&clock))),
        ("tampered", tampered),
        ("short", with_signature(&genuine, &signature[..131])),
        (
            "long",
            with_signature(&genuine, &[&signature[..], &[0]].concat()),
        ),
        ("swapped", with_signature(&genuine, &swapped)),
        ("zero", with_signature(&genuine, &[0u8; 132])),
        ("der", with_signature(&genuine, &der)),
    ] {
        assert_eq!(
            outcome(&verifier, &token).await,
            Err(InvalidToken::BadSignature),
            "{what}"
        );
    }
    // The genuine token still verifies.
    assert_eq!(outcome(&verifier, &genuine).await, Ok(()));
}

#[tokio::test]
async fn es512_fits_p521_keys_only() {
    let clock = ManualClock::default();
    let (p521, p256) = (P521::generate("p521"), TestKey::ec_p256("p256"));
    let mut unpinned_p256 = p256.public_jwk();
    unpinned_p256.as_object_mut().unwrap().remove("alg");
    let mut unpinned_p521 = p521.jwk();
    unpinned_p521.as_object_mut().unwrap().remove("alg");
    let verifier = verifier_over(vec![unpinned_p521, unpinned_p256], &clock);
    let claims = claims(&clock);
    // ES512 under a P-256 key's kid, ES256 or ES384 under the P-521 key's: refused before the
    // signature; ES512 left off the allow-list: refused before any key lookup.
    assert_eq!(
        outcome(
            &verifier,
            &p521.sign_with_header(&json!({ "alg": "ES512", "kid": "p256" }), &claims)
        )
        .await,
        Err(InvalidToken::AlgorithmMismatch)
    );
    for alg in ["ES256", "ES384"] {
        assert_eq!(
            outcome(
                &verifier,
                &p521.sign_with_header(&json!({ "alg": alg, "kid": "p521" }), &claims)
            )
            .await,
            Err(InvalidToken::AlgorithmMismatch),
            "{alg}"
        );
    }
    let source = serving(json!({ "keys": [p521.jwk()] }).to_string());
    let without_es512 = builder(source, Arc::new(clock.clone()))
        .algorithms(&[Algorithm::ES256, Algorithm::ES384])
        .build()
        .unwrap();
    assert_eq!(
        outcome(&without_es512, &p521.sign(&claims)).await,
        Err(InvalidToken::AlgorithmNotAllowed)
    );
    // A JWK that pins ES512 on another curve, or another algorithm on P-521, is skipped.
    let mut es512_on_p256 = p256.public_jwk();
    es512_on_p256["alg"] = json!("ES512");
    let mut es256_on_p521 = p521.jwk();
    es256_on_p521["alg"] = json!("ES256");
    es256_on_p521["kid"] = json!("other");
    let document = json!({ "keys": [es512_on_p256, es256_on_p521] }).to_string();
    let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
    assert!(usable.is_empty());
    assert!(
        skipped
            .iter()
            .all(|skip| skip.reason == SkipReason::UnsupportedAlgorithm)
    );
}

#[test]
fn a_kid_shared_by_a_p521_and_another_ec_key_is_ambiguous() {
    // One kty (EC) under one kid: the set does not say which key signs, whatever the curve.
    let (p521, p256) = (P521::generate("dup"), TestKey::ec_p256("dup"));
    let mut unpinned = p256.public_jwk();
    unpinned.as_object_mut().unwrap().remove("alg");
    let set = KeySet::parse(json!({ "keys": [p521.jwk(), unpinned] }).to_string()).unwrap();
    for alg in [Algorithm::ES512, Algorithm::ES256] {
        assert_eq!(
            set.find(Some("dup"), alg).unwrap_err(),
            InvalidToken::AmbiguousKey,
            "{alg}"
        );
    }
    // An RSA key under the same kid is told apart by the algorithm.
    let rsa = TestKey::rsa("dup");
    let set = KeySet::parse(json!({ "keys": [p521.jwk(), rsa.public_jwk()] }).to_string()).unwrap();
    assert_eq!(
        set.find(Some("dup"), Algorithm::ES512).unwrap().kind(),
        KeyKind::EcP521
    );
}

#[test]
fn p521_coordinates_must_be_66_bytes_and_on_the_curve() {
    let key = P521::generate("p521");
    let reason = |jwk: Value| {
        let document = json!({ "keys": [jwk] }).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        (usable.len(), skipped.first().map(|skip| skip.reason))
    };
    assert_eq!(reason(key.jwk()), (1, None));
    let point = key.point();
    let (x, y) = (&point[1..67], &point[67..]);
    // A coordinate with its leading byte dropped (some encoders strip zeros): RFC 7518 §6.2.1.2
    // fixes the length at 66.
    for (x, y) in [(&x[1..], y), (x, &y[1..])] {
        let mut jwk = key.jwk();
        jwk["x"] = json!(b64(x));
        jwk["y"] = json!(b64(y));
        assert_eq!(reason(jwk), (0, Some(SkipReason::BadCoordinates)));
    }
    let mut off_curve = key.jwk();
    let mut bent = y.to_vec();
    bent[65] ^= 1;
    off_curve["y"] = json!(b64(bent));
    assert_eq!(reason(off_curve), (0, Some(SkipReason::PointNotOnCurve)));
    // P-521 coordinates under another curve's name.
    let mut misnamed = key.jwk();
    misnamed["crv"] = json!("P-384");
    misnamed.as_object_mut().unwrap().remove("alg");
    assert_eq!(reason(misnamed), (0, Some(SkipReason::BadCoordinates)));
}

#[tokio::test]
async fn a_p521_key_given_only_as_a_certificate_verifies_es512() {
    let clock = ManualClock::default();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let der = rcgen::CertificateParams::new(vec!["idp.test".into()])
        .unwrap()
        .self_signed(&pair)
        .unwrap()
        .der()
        .to_vec();
    let key = P521 {
        kid: "cert".into(),
        pair: EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            &pair.serialize_der(),
        )
        .unwrap(),
    };
    let x5c_only =
        json!({ "kty": "EC", "kid": "cert", "use": "sig", "x5c": [STANDARD.encode(&der)] });
    // The same key with its members and the certificate: the two must agree.
    let mut both = key.jwk();
    both["x5c"] = json!([STANDARD.encode(&der)]);
    both["kid"] = json!("both");
    // A crv that contradicts the certificate skips the key.
    let mut contradicted = x5c_only.clone();
    contradicted["crv"] = json!("P-256");
    contradicted["kid"] = json!("contradicted");
    let verifier = verifier_over(vec![x5c_only, both, contradicted], &clock);
    let set = verifier.key_set().await.unwrap();
    assert_eq!(set.keys().len(), 2);
    assert!(set.keys().iter().all(|key| key.kind() == KeyKind::EcP521));
    assert_eq!(set.skipped()[0].reason, SkipReason::CertificateMismatch);
    for kid in ["cert", "both"] {
        let token = key.sign_with_header(&json!({ "alg": "ES512", "kid": kid }), &claims(&clock));
        assert_eq!(outcome(&verifier, &token).await, Ok(()), "{kid}");
    }
}

#[test]
fn es512_parses_prints_and_has_no_jsonwebtoken_equivalent() {
    assert_eq!(Algorithm::from_str("ES512"), Ok(Algorithm::ES512));
    assert_eq!(Algorithm::ES512.to_string(), "ES512");
    assert!(jsonwebtoken::Algorithm::try_from(Algorithm::ES512).is_err());
    assert_eq!(
        jsonwebtoken::Algorithm::try_from(Algorithm::ES384),
        Ok(jsonwebtoken::Algorithm::ES384)
    );
    assert!(KeyKind::EcP521.fits(Algorithm::ES512));
    assert!(!KeyKind::EcP521.fits(Algorithm::ES384));
    assert!(!KeyKind::EcP384.fits(Algorithm::ES512));
}

#[test]
fn verify_signature_checks_es512_with_aws_lc() {
    let key = P521::generate("p521");
    let set = KeySet::parse(json!({ "keys": [key.jwk()] }).to_string()).unwrap();
    let verifying = &set.keys()[0];
    let message = b"header.payload";
    let signature = b64(key.signature(message));
    assert_eq!(signature.len(), 176);
    assert!(verifying.verify_signature(Algorithm::ES512, message, &signature));
    assert!(!verifying.verify_signature(Algorithm::ES512, b"header.payloaD", &signature));
    // One character short or long (131 or 133 bytes once decoded, or not base64url at all).
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &signature[..175]));
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &format!("{signature}A")));
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &format!("{signature}AA")));
    assert!(!verifying.verify_signature(Algorithm::ES512, message, ""));
    // Not base64url without padding: standard alphabet, padding, a stray character.
    let standard = STANDARD.encode(key.signature(message));
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &standard));
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &format!("{signature}=")));
    let mut stray = signature.clone();
    stray.replace_range(..1, "*");
    assert!(!verifying.verify_signature(Algorithm::ES512, message, &stray));
    // An algorithm the key does not accept is false before any crypto.
    assert!(!verifying.verify_signature(Algorithm::ES384, message, &signature));
}
