//! JWKS parsing: good keys survive bad neighbours, refused keys are refused, lookups are exact.
#![allow(clippy::unwrap_used)]

use jwkstash_jwks::testkit::{TestKey, b64, jwks};
use jwkstash_jwks::{Algorithm, InvalidToken, KeyKind, KeySet, KeySetError, SkipReason};
use serde_json::{Value, json};

fn parse(document: &Value) -> Result<KeySet, KeySetError> {
    KeySet::parse(document.to_string())
}

fn set_of(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}

fn rsa_jwk_with_modulus_bits(bits: usize) -> Value {
    let mut n = vec![0xffu8; bits / 8];
    n[0] = 0xc0;
    json!({ "kty": "RSA", "kid": format!("rsa-{bits}"), "n": b64(&n), "e": "AQAB" })
}

#[test]
fn real_keys_of_every_type_parse() {
    let keys = [
        TestKey::rsa("rsa"),
        TestKey::ec_p256("p256"),
        TestKey::ec_p384("p384"),
        TestKey::ed25519("ed"),
    ];
    let set = parse(&jwks(&keys.iter().collect::<Vec<_>>())).unwrap();
    assert_eq!(set.keys().len(), 4);
    assert!(set.skipped().is_empty());
    assert_eq!(
        set.find(Some("rsa"), Algorithm::RS256).unwrap().kind(),
        KeyKind::Rsa { bits: 2048 }
    );
    assert_eq!(
        set.find(Some("p256"), Algorithm::ES256).unwrap().kind(),
        KeyKind::EcP256
    );
    assert_eq!(
        set.find(Some("p384"), Algorithm::ES384).unwrap().kind(),
        KeyKind::EcP384
    );
    assert_eq!(
        set.find(Some("ed"), Algorithm::EdDSA).unwrap().kind(),
        KeyKind::Ed25519
    );
}

#[test]
fn one_bad_key_does_not_break_the_set() {
    let good = TestKey::ec_p256("good");
    let document = set_of(vec![
        json!({ "kty": "XYZ", "kid": "unknown-kty" }),
        json!({ "kty": "RSA", "kid": "no-n", "e": "AQAB" }),
        json!({ "kty": "EC", "kid": "short-x", "crv": "P-256", "x": b64([1u8; 31]), "y": b64([1u8; 32]) }),
        json!("not an object"),
        json!({ "kty": "RSA", "kid": 42, "n": "AQAB", "e": "AQAB" }),
        good.public_jwk(),
    ]);
    let set = parse(&document).unwrap();
    assert_eq!(set.keys().len(), 1);
    assert_eq!(set.skipped().len(), 5);
    assert!(set.find(Some("good"), Algorithm::ES256).is_ok());
}

#[test]
fn refused_keys() {
    let rsa = TestKey::rsa("rsa");
    let with = |extra: Value| {
        let mut jwk = rsa.public_jwk();
        for (name, value) in extra.as_object().unwrap() {
            jwk[name] = value.clone();
        }
        jwk
    };
    let cases = [
        (rsa_jwk_with_modulus_bits(1024), SkipReason::RsaSize),
        (rsa_jwk_with_modulus_bits(2040), SkipReason::RsaSize),
        (with(json!({ "e": "AQ" })), SkipReason::RsaExponent),
        (with(json!({ "e": "Ag" })), SkipReason::RsaExponent),
        (with(json!({ "d": "AQAB" })), SkipReason::PrivateKey),
        (
            with(json!({ "p": "AQAB", "q": "AQAB" })),
            SkipReason::PrivateKey,
        ),
        (with(json!({ "use": "enc" })), SkipReason::NotForSignatures),
        (
            with(json!({ "key_ops": ["encrypt"] })),
            SkipReason::NoVerifyOperation,
        ),
        (
            with(json!({ "alg": "HS256" })),
            SkipReason::UnsupportedAlgorithm,
        ),
        (
            with(json!({ "alg": "ES256" })),
            SkipReason::UnsupportedAlgorithm,
        ),
        (
            with(json!({ "alg": "none" })),
            SkipReason::UnsupportedAlgorithm,
        ),
        (
            with(json!({ "kid": "k".repeat(300) })),
            SkipReason::KidTooLong,
        ),
        (
            json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }),
            SkipReason::SymmetricKey,
        ),
        (
            json!({ "kty": "EC", "crv": "secp256k1", "x": b64([1u8; 32]), "y": b64([1u8; 32]) }),
            SkipReason::UnsupportedCurve,
        ),
        (
            json!({ "kty": "OKP", "crv": "Ed448", "x": b64([1u8; 57]) }),
            SkipReason::UnsupportedCurve,
        ),
    ];
    for (jwk, reason) in cases {
        let error = parse(&set_of(vec![jwk.clone()])).unwrap_err();
        assert!(
            matches!(&error, KeySetError::NoUsableKey { skipped }
                if skipped.len() == 1 && skipped[0].reason == reason),
            "{jwk}: {error}"
        );
        let set = parse(&set_of(vec![
            jwk.clone(),
            TestKey::ed25519("ok").public_jwk(),
        ]))
        .unwrap();
        assert_eq!(set.skipped()[0].reason, reason, "{jwk}");
    }
}

#[test]
fn documents_that_are_not_key_sets_are_refused() {
    for body in [
        "",
        "{}",
        r#"{"keys":{}}"#,
        r#"{"keys":[]}"#,
        "<html>oops</html>",
        "[]",
        "null",
        "\u{feff}{}",
    ] {
        assert!(KeySet::parse(body.to_owned()).is_err(), "{body:?} accepted");
    }
    assert!(KeySet::parse(vec![0xff, 0xfe, b'{']).is_err());
    let deep = "[".repeat(10_000);
    assert!(KeySet::parse(format!(r#"{{"keys":{deep}"#)).is_err());
}

#[test]
fn lookups_fit_the_algorithm_to_the_key() {
    let rsa = TestKey::rsa("rsa");
    let mut unpinned = rsa.public_jwk();
    unpinned.as_object_mut().unwrap().remove("alg");
    unpinned["kid"] = json!("unpinned");
    let set = parse(&set_of(vec![
        rsa.public_jwk(),
        unpinned,
        TestKey::ec_p256("ec").public_jwk(),
    ]))
    .unwrap();
    // The JWK pins RS256: PS256 with the same key is refused.
    assert_eq!(
        set.find(Some("rsa"), Algorithm::PS256).unwrap_err(),
        InvalidToken::AlgorithmMismatch
    );
    // Without alg, any RSA algorithm fits an RSA key, but no EC one.
    assert!(set.find(Some("unpinned"), Algorithm::PS512).is_ok());
    assert_eq!(
        set.find(Some("unpinned"), Algorithm::ES256).unwrap_err(),
        InvalidToken::AlgorithmMismatch
    );
    assert_eq!(
        set.find(Some("ec"), Algorithm::ES384).unwrap_err(),
        InvalidToken::AlgorithmMismatch
    );
    assert_eq!(
        set.find(Some("missing"), Algorithm::RS256).unwrap_err(),
        InvalidToken::UnknownKid
    );
    // Without kid: only when exactly one key fits.
    assert!(set.find(None, Algorithm::ES256).is_ok());
    assert_eq!(
        set.find(None, Algorithm::RS256).unwrap_err(),
        InvalidToken::MissingKid
    );
    assert_eq!(
        set.find(None, Algorithm::EdDSA).unwrap_err(),
        InvalidToken::MissingKid
    );
}

#[test]
fn a_kid_shared_by_two_keys_of_one_type_is_ambiguous() {
    let a = TestKey::rsa("dup");
    let b = TestKey::rsa("dup");
    let c = TestKey::ec_p256("dup");
    let set = parse(&jwks(&[&a, &b, &c])).unwrap();
    assert_eq!(
        set.find(Some("dup"), Algorithm::RS256).unwrap_err(),
        InvalidToken::AmbiguousKey
    );
    // A different key type under the same kid is told apart by the algorithm.
    assert!(set.find(Some("dup"), Algorithm::ES256).is_ok());
}

#[test]
fn equal_documents_have_equal_fingerprints() {
    let key = TestKey::ed25519("k");
    let one = parse(&jwks(&[&key])).unwrap();
    let two = parse(&jwks(&[&key])).unwrap();
    let other = parse(&jwks(&[&TestKey::ed25519("k")])).unwrap();
    assert_eq!(one.fingerprint(), two.fingerprint());
    assert_ne!(one.fingerprint(), other.fingerprint());
}

#[test]
fn without_kid_the_family_must_have_a_single_key() {
    let rs = TestKey::rsa("rs");
    let ps = TestKey::rsa("ps").with_alg(Algorithm::PS256);
    let set = parse(&jwks(&[&rs, &ps, &TestKey::ed25519("ed")])).unwrap();
    // Two RSA keys: even though only one is pinned to RS256, no guess is made.
    assert_eq!(
        set.find(None, Algorithm::RS256).unwrap_err(),
        InvalidToken::MissingKid
    );
    assert!(set.find(None, Algorithm::EdDSA).is_ok());
    let single = parse(&jwks(&[&ps])).unwrap();
    // One key of the family, pinned to another algorithm of it: refused.
    assert_eq!(
        single.find(None, Algorithm::RS256).unwrap_err(),
        InvalidToken::MissingKid
    );
    assert!(single.find(None, Algorithm::PS256).is_ok());
}

#[test]
fn debug_output_names_keys_without_their_material() {
    let (rsa, ec) = (TestKey::rsa("k-rsa"), TestKey::ec_p256("k-ec"));
    let set = parse(&jwks(&[&rsa, &ec])).unwrap();
    let shown = format!("{set:?}");
    for named in [
        "KeySet",
        "k-rsa",
        "k-ec",
        "Rsa { bits: 2048 }",
        "EcP256",
        "fingerprint",
    ] {
        assert!(shown.contains(named), "{named} missing from {shown}");
    }
    let key = format!("{:?}", set.keys()[0]);
    assert!(
        key.starts_with("VerifyingKey") && key.contains("k-rsa"),
        "{key}"
    );
    // No key material: neither the modulus nor a coordinate, in any part.
    for material in [
        &rsa.public_jwk()["n"],
        &ec.public_jwk()["x"],
        &ec.public_jwk()["y"],
    ] {
        let material = material.as_str().unwrap();
        assert!(!shown.contains(&material[..16]), "{shown}");
    }
}

#[test]
fn a_set_keeps_its_document_and_names_the_keys_it_skipped() {
    let ec = TestKey::ec_p256("k-ec");
    let long_kid = "k".repeat(257);
    let document = set_of(vec![
        ec.public_jwk(),
        json!({ "kty": "oct", "kid": "k-oct", "k": "c2VjcmV0" }),
        json!({ "kty": "oct", "kid": long_kid, "k": "c2VjcmV0" }),
    ]);
    let bytes = document.to_string();
    let set = KeySet::parse(bytes.clone().into_bytes()).unwrap();
    assert_eq!(set.raw().as_ref(), bytes.as_bytes());
    let skipped: Vec<_> = set
        .skipped()
        .iter()
        .map(|s| (s.kid.clone(), s.reason))
        .collect();
    // A kid is reported when it is usable (at most 256 bytes), never a longer one.
    assert_eq!(
        skipped,
        [
            (Some("k-oct".to_owned()), SkipReason::SymmetricKey),
            (None, SkipReason::KidTooLong),
        ]
    );
}

#[test]
fn a_keys_issuer_must_be_between_1_and_1024_bytes() {
    let with_issuer = |issuer: &str| {
        let mut jwk = TestKey::ec_p256("k").public_jwk();
        jwk["issuer"] = json!(issuer);
        let document = set_of(vec![jwk]).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        (usable.len(), skipped.first().map(|s| s.reason))
    };
    assert_eq!(with_issuer("https://idp.example/"), (1, None));
    assert_eq!(with_issuer(&"i".repeat(1024)), (1, None));
    assert_eq!(with_issuer(""), (0, Some(SkipReason::Malformed)));
    assert_eq!(
        with_issuer(&"i".repeat(1025)),
        (0, Some(SkipReason::Malformed))
    );
}

#[test]
fn an_ec_key_with_one_coordinate_of_the_wrong_length_has_bad_coordinates() {
    let jwk = TestKey::ec_p256("k").public_jwk();
    let x = jwkstash_jwks::testkit::b64_decode(jwk["x"].as_str().unwrap());
    let y = jwkstash_jwks::testkit::b64_decode(jwk["y"].as_str().unwrap());
    for (x, y) in [(&x[1..], &y[..]), (&x[..], &y[1..])] {
        let mut bad = jwk.clone();
        bad["x"] = json!(b64(x));
        bad["y"] = json!(b64(y));
        let document = set_of(vec![bad]).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        assert!(usable.is_empty());
        assert_eq!(skipped[0].reason, SkipReason::BadCoordinates);
    }
}
