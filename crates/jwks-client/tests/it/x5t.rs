//! Keys found by certificate thumbprint (`x5t`, `x5t#S256`) and keys given only as an `x5c`
//! certificate, with certificates made at run time (rcgen). `x5c` in a token header is never
//! followed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwkstash_core::TokioClock;
use jwkstash_jwks::{InvalidToken, KeySet, SkipReason, Verifier, VerifyError};
use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A key pair with a self-signed certificate.
struct Certified {
    pair: KeyPair,
    der: Vec<u8>,
    alg: Algorithm,
}

impl Certified {
    fn new(signature: &'static SignatureAlgorithm, alg: Algorithm) -> Self {
        let pair = KeyPair::generate_for(signature).unwrap();
        let der = CertificateParams::new(vec!["idp.test".into()])
            .unwrap()
            .self_signed(&pair)
            .unwrap()
            .der()
            .to_vec();
        Self { pair, der, alg }
    }

    fn p256() -> Self {
        Self::new(&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
    }

    fn x5t(&self) -> String {
        let sha1 =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der);
        URL_SAFE_NO_PAD.encode(sha1.as_ref())
    }

    fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    fn x5c(&self) -> Value {
        json!([STANDARD.encode(&self.der)])
    }

    /// A JWK with the key only in `x5c` (and the thumbprints), as AD FS and WSO2 publish.
    fn jwk(&self, kid: &str) -> Value {
        let kty = if self.alg == Algorithm::RS256 {
            "RSA"
        } else {
            "EC"
        };
        json!({ "kty": kty, "kid": kid, "use": "sig", "x5c": self.x5c(), "x5t": self.x5t() })
    }

    /// A JWK with the EC members and the certificate.
    fn jwk_with_members(&self, kid: &str) -> Value {
        let point = self.pair.public_key_raw();
        let (x, y) = point[1..].split_at(32);
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
            "x5c": self.x5c(), "x5t#S256": self.x5t_s256(),
        })
    }

    fn sign(&self, header: Header, clock: &TokioClock) -> String {
        if self.alg == Algorithm::RS256 {
            return sign_rs256(&self.pair, &header, &claims(clock));
        }
        let key = EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, &claims(clock), &key).unwrap()
    }

    fn header(&self) -> Header {
        Header::new(self.alg)
    }
}

/// An RS256 token signed with aws-lc from the PKCS#8 key rcgen gives (jsonwebtoken wants PKCS#1).
fn sign_rs256(pair: &KeyPair, header: &Header, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pair.serialize_der()).unwrap();
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn verifier_over(keys: Vec<Value>, clock: &TokioClock) -> Verifier {
    let source = documents(&[json!({ "keys": keys })]);
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_token_with_only_a_thumbprint_finds_the_key_of_that_certificate() {
    let (adfs, other) = (Certified::p256(), Certified::p256());
    let clock = TokioClock::new();
    let verifier = verifier_over(
        vec![adfs.jwk_with_members("adfs-1"), other.jwk("other")],
        &clock,
    );
    let mut by_s256 = adfs.header();
    by_s256.x5t_s256 = Some(adfs.x5t_s256());
    let claims: Value = verifier.verify(&adfs.sign(by_s256, &clock)).await.unwrap();
    assert_eq!(claims["sub"], "user-1");
    // x5t (SHA-1) of a key whose JWK states only x5t#S256: computed from its x5c.
    let mut by_sha1 = adfs.header();
    by_sha1.x5t = Some(adfs.x5t());
    verifier
        .verify::<Value>(&adfs.sign(by_sha1, &clock))
        .await
        .unwrap();
    // The other key by its thumbprint; a kid takes precedence over a thumbprint.
    let mut other_header = other.header();
    other_header.x5t = Some(other.x5t());
    verifier
        .verify::<Value>(&other.sign(other_header, &clock))
        .await
        .unwrap();
    let mut both = adfs.header();
    both.kid = Some("adfs-1".into());
    both.x5t = Some(other.x5t());
    verifier
        .verify::<Value>(&adfs.sign(both, &clock))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_rsa_key_given_only_as_a_certificate_verifies_by_kid_and_by_x5t() {
    let rsa = Certified::new(&rcgen::PKCS_RSA_SHA256, Algorithm::RS256);
    let clock = TokioClock::new();
    let verifier = verifier_over(vec![rsa.jwk("rsa-cert")], &clock);
    let set = verifier.key_set().await.unwrap();
    let key = &set.keys()[0];
    assert!(matches!(
        key.kind(),
        jwkstash_jwks::KeyKind::Rsa { bits: 2048 }
    ));
    // Both thumbprints of the certificate, whatever the JWK stated (here x5t only).
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &rsa.der);
    assert_eq!(key.x5t().map(|t| t.as_slice()), Some(sha1.as_ref()));
    let sha256: [u8; 32] = Sha256::digest(&rsa.der).into();
    assert_eq!(key.x5t_s256(), Some(&sha256));
    let mut by_kid = rsa.header();
    by_kid.kid = Some("rsa-cert".into());
    verifier
        .verify::<Value>(&rsa.sign(by_kid, &clock))
        .await
        .unwrap();
    let mut by_x5t = rsa.header();
    by_x5t.x5t = Some(rsa.x5t());
    verifier
        .verify::<Value>(&rsa.sign(by_x5t, &clock))
        .await
        .unwrap();
}

#[test]
fn a_certificate_that_contradicts_its_jwk_is_refused() {
    let (one, two) = (Certified::p256(), Certified::p256());
    let explain = |jwk: Value| {
        let document = json!({ "keys": [jwk] }).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        assert!(usable.is_empty());
        skipped[0].reason
    };
    // Members of one key, certificate of another.
    let mut swapped = one.jwk_with_members("k");
    swapped["x5c"] = two.x5c();
    swapped.as_object_mut().unwrap().remove("x5t#S256");
    assert_eq!(explain(swapped), SkipReason::CertificateMismatch);
    // A stated thumbprint that is not the certificate's.
    let mut wrong_x5t = one.jwk("k");
    wrong_x5t["x5t"] = json!(two.x5t());
    assert_eq!(explain(wrong_x5t), SkipReason::CertificateMismatch);
    // A certificate of an EC key under kty RSA.
    let mut wrong_kty = one.jwk("k");
    wrong_kty["kty"] = json!("RSA");
    assert_eq!(explain(wrong_kty), SkipReason::CertificateMismatch);
    // Not a certificate at all, and a truncated one.
    let mut garbage = one.jwk("k");
    garbage["x5c"] = json!(["bm90IGEgY2VydGlmaWNhdGU="]);
    assert_eq!(explain(garbage), SkipReason::Certificate);
    let mut truncated = one.jwk("k");
    truncated["x5c"] = json!([STANDARD.encode(&one.der[..one.der.len() / 2])]);
    assert_eq!(explain(truncated), SkipReason::Certificate);
    let mut empty = one.jwk("k");
    empty["x5c"] = json!([]);
    assert_eq!(explain(empty), SkipReason::Certificate);
}

#[tokio::test(start_paused = true)]
async fn a_certificate_in_the_token_header_is_never_followed() {
    let (published, attacker) = (Certified::p256(), Certified::p256());
    let clock = TokioClock::new();
    let verifier = verifier_over(
        vec![published.jwk("k1"), Certified::p256().jwk("k2")],
        &clock,
    );
    // The attacker's token carries its own certificate and thumbprint.
    let mut header = attacker.header();
    header.x5c = Some(vec![STANDARD.encode(&attacker.der)]);
    let outcome = verifier
        .verify::<Value>(&attacker.sign(header, &clock))
        .await;
    assert!(
        matches!(
            outcome,
            Err(VerifyError::InvalidToken(InvalidToken::MissingKid))
        ),
        "{outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_thumbprints_in_a_token_are_an_invalid_key_id() {
    let cert = Certified::p256();
    let clock = TokioClock::new();
    let verifier = builder(silent_source(), Arc::new(clock.clone()))
        .build()
        .unwrap();
    let valid = cert.sign(cert.header(), &clock);
    let (_, rest) = valid.split_once('.').unwrap();
    for header in [
        json!({ "alg": "ES256", "x5t": 20 }),
        json!({ "alg": "ES256", "x5t": "too-short" }),
        json!({ "alg": "ES256", "x5t#S256": cert.x5t() }),
        json!({ "alg": "ES256", "x5t#S256": format!("{}=", cert.x5t_s256()) }),
    ] {
        let token = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()));
        let outcome = verifier.verify::<Value>(&token).await;
        assert!(
            matches!(
                outcome,
                Err(VerifyError::InvalidToken(InvalidToken::InvalidKid))
            ),
            "{header}: {outcome:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_thumbprint_is_refetched_once_like_an_unknown_kid() {
    let (old, new) = (Certified::p256(), Certified::p256());
    let clock = TokioClock::new();
    let source = documents(&[
        json!({ "keys": [old.jwk("old")] }),
        json!({ "keys": [old.jwk("old"), new.jwk("new")] }),
    ]);
    let verifier = builder(source, Arc::new(clock.clone())).build().unwrap();
    verifier.prefetch().await.unwrap();
    let mut header = new.header();
    header.x5t_s256 = Some(new.x5t_s256());
    let token = new.sign(header, &clock);
    for _ in 0..5 {
        verifier.verify::<Value>(&token).await.unwrap();
    }
    assert_eq!(verifier.stats().fetches_unknown_kid, 1);
}

/// A self-signed Ed25519 certificate (deterministic signature, so its size is exact) padded
/// with a private extension to exactly `size` DER bytes.
fn ed25519_certificate_of(size: usize) -> (KeyPair, Vec<u8>) {
    let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut padding = 0;
    for _ in 0..8 {
        let mut params = CertificateParams::new(vec!["idp.test".into()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(1u64));
        // An OCTET STRING of `padding` zeros (long-form length).
        let mut content = vec![0x04, 0x82];
        content.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
        content.resize(content.len() + padding, 0);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 99999, 1],
                content,
            ));
        let der = params.self_signed(&pair).unwrap().der().to_vec();
        if der.len() == size {
            return (pair, der);
        }
        padding = (padding + size).checked_sub(der.len()).unwrap();
    }
    panic!("no certificate of exactly {size} bytes");
}

/// An EdDSA token signed with aws-lc from rcgen's PKCS#8 key.
fn sign_eddsa(pair: &KeyPair, kid: &str, clock: &TokioClock) -> String {
    let header = json!({ "alg": "EdDSA", "kid": kid });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(clock).to_string())
    );
    let key = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&pair.serialize_der()).unwrap();
    let signature = key.sign(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn okp_certificate_jwk(kid: &str, x5c: Value) -> Value {
    json!({ "kty": "OKP", "kid": kid, "use": "sig", "x5c": x5c })
}

#[tokio::test(start_paused = true)]
async fn an_ed25519_key_given_only_as_a_certificate_verifies_up_to_the_size_limit() {
    // The documented limit, 16 KiB (not the constant: the test must notice if it moves).
    let limit = 16 * 1024;
    assert_eq!(jwkstash_jwks::MAX_CERTIFICATE_BYTES, limit);
    let (small, small_der) = ed25519_certificate_of(600);
    let (largest, largest_der) = ed25519_certificate_of(limit);
    let clock = TokioClock::new();
    let verifier = verifier_over(
        vec![
            okp_certificate_jwk("small", json!([STANDARD.encode(&small_der)])),
            // Unpadded base64 is accepted too (x5c is standard base64, padding optional).
            okp_certificate_jwk(
                "largest",
                json!([base64::engine::general_purpose::STANDARD_NO_PAD.encode(&largest_der)]),
            ),
        ],
        &clock,
    );
    let set = verifier.key_set().await.unwrap();
    assert_eq!(set.keys().len(), 2);
    assert!(
        set.keys()
            .iter()
            .all(|key| key.kind() == jwkstash_jwks::KeyKind::Ed25519)
    );
    for (pair, kid) in [(&small, "small"), (&largest, "largest")] {
        let claims: Value = verifier
            .verify(&sign_eddsa(pair, kid, &clock))
            .await
            .unwrap();
        assert_eq!(claims["sub"], "user-1");
    }
}

#[test]
fn a_certificate_one_byte_over_the_limit_or_with_trailing_bytes_is_refused() {
    let explain = |x5c: Value| {
        let document = json!({ "keys": [okp_certificate_jwk("k", x5c)] }).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        (usable.len(), skipped.first().map(|skipped| skipped.reason))
    };
    // The documented limit, 16 KiB (not the constant: the test must notice if it moves).
    let limit = 16 * 1024;
    assert_eq!(jwkstash_jwks::MAX_CERTIFICATE_BYTES, limit);
    let (_, at_limit) = ed25519_certificate_of(limit);
    assert_eq!(explain(json!([STANDARD.encode(&at_limit)])), (1, None));
    let (_, over) = ed25519_certificate_of(limit + 1);
    assert_eq!(
        explain(json!([STANDARD.encode(&over)])),
        (0, Some(SkipReason::Certificate))
    );
    // A certificate followed by bytes that belong to nothing.
    let (_, small) = ed25519_certificate_of(600);
    let mut trailing = small.clone();
    trailing.push(0);
    assert_eq!(
        explain(json!([STANDARD.encode(&trailing)])),
        (0, Some(SkipReason::Certificate))
    );
    // Far over the limit: refused before decoding.
    let huge = "A".repeat(4 * limit);
    assert_eq!(explain(json!([huge])), (0, Some(SkipReason::Certificate)));
}

/// A P-256 public key given as raw point bytes, for certificates rcgen would not make.
struct RawEcPoint(Vec<u8>);

impl rcgen::PublicKeyData for RawEcPoint {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

#[test]
fn a_certificate_with_a_compressed_or_short_ec_point_is_refused() {
    let issuer_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let issuer_params = CertificateParams::new(vec!["ca.test".into()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&issuer_params, &issuer_key);
    let subject = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let uncompressed = subject.public_key_raw().to_vec();
    assert_eq!(uncompressed.len(), 65);
    let certificate_for = |point: Vec<u8>| {
        let der = CertificateParams::new(vec!["idp.test".into()])
            .unwrap()
            .signed_by(&RawEcPoint(point), &issuer)
            .unwrap()
            .der()
            .to_vec();
        let jwk = json!({ "kty": "EC", "kid": "k", "x5c": [STANDARD.encode(der)] });
        let document = json!({ "keys": [jwk] }).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        (usable.len(), skipped.first().map(|skipped| skipped.reason))
    };
    // The same key through the same path is usable: the refusals below are about the point.
    assert_eq!(certificate_for(uncompressed.clone()), (1, None));
    let mut compressed = vec![0x02 | (uncompressed[64] & 1)];
    compressed.extend_from_slice(&uncompressed[1..33]);
    let mut short = uncompressed.clone();
    short.pop();
    let mut long = uncompressed.clone();
    long.push(0);
    // Shorter than one coordinate: must be refused before it is split into x and y.
    let tiny = uncompressed[..17].to_vec();
    for point in [compressed, short, long, tiny] {
        assert_eq!(
            certificate_for(point),
            (0, Some(SkipReason::BadCoordinates))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_p384_key_given_only_as_a_certificate_verifies_es384() {
    let p384 = Certified::new(&rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384);
    let clock = TokioClock::new();
    let verifier = verifier_over(vec![p384.jwk("p384")], &clock);
    let set = verifier.key_set().await.unwrap();
    assert_eq!(set.keys()[0].kind(), jwkstash_jwks::KeyKind::EcP384);
    let mut header = p384.header();
    header.kid = Some("p384".into());
    let claims: Value = verifier.verify(&p384.sign(header, &clock)).await.unwrap();
    assert_eq!(claims["sub"], "user-1");
}

/// `jwk` with the members of `extra` added (or replaced).
fn with_members(mut jwk: Value, extra: &Value) -> Value {
    for (name, value) in extra.as_object().unwrap() {
        jwk[name] = value.clone();
    }
    jwk
}

#[tokio::test(start_paused = true)]
async fn an_x5c_only_key_whose_members_contradict_its_certificate_is_skipped() {
    let p256 = Certified::p256();
    let (ed25519, ed25519_der) = ed25519_certificate_of(600);
    let ed25519_jwk = okp_certificate_jwk("k", json!([STANDARD.encode(&ed25519_der)]));
    let clock = TokioClock::new();
    let mut header = p256.header();
    header.kid = Some("k".into());
    let p256_token = p256.sign(header, &clock);
    let ed25519_token = sign_eddsa(&ed25519, "k", &clock);
    let other = Certified::p256();
    // (certificate, members, genuine token of the certificate's key, why it is skipped)
    let cases = [
        (
            p256.jwk("k"),
            json!({ "crv": "P-384" }),
            &p256_token,
            SkipReason::CertificateMismatch,
        ),
        (
            p256.jwk("k"),
            json!({ "crv": "secp256k1" }),
            &p256_token,
            SkipReason::CertificateMismatch,
        ),
        (
            p256.jwk("k"),
            json!({ "crv": "Ed25519" }),
            &p256_token,
            SkipReason::CertificateMismatch,
        ),
        (
            p256.jwk("k"),
            json!({ "alg": "ES384" }),
            &p256_token,
            SkipReason::UnsupportedAlgorithm,
        ),
        (
            p256.jwk("k"),
            json!({ "alg": "EdDSA" }),
            &p256_token,
            SkipReason::UnsupportedAlgorithm,
        ),
        (
            p256.jwk("k"),
            json!({ "use": "enc" }),
            &p256_token,
            SkipReason::NotForSignatures,
        ),
        (
            p256.jwk("k"),
            json!({ "key_ops": ["verify", "encrypt"] }),
            &p256_token,
            SkipReason::KeyOperationsMismatch,
        ),
        (
            ed25519_jwk.clone(),
            json!({ "crv": "Ed448" }),
            &ed25519_token,
            SkipReason::CertificateMismatch,
        ),
        (
            ed25519_jwk.clone(),
            json!({ "crv": "X25519" }),
            &ed25519_token,
            SkipReason::CertificateMismatch,
        ),
        (
            ed25519_jwk.clone(),
            json!({ "crv": "P-256" }),
            &ed25519_token,
            SkipReason::CertificateMismatch,
        ),
        (
            ed25519_jwk.clone(),
            json!({ "alg": "ES256" }),
            &ed25519_token,
            SkipReason::UnsupportedAlgorithm,
        ),
        (
            ed25519_jwk.clone(),
            json!({ "key_ops": ["verify", "deriveKey"] }),
            &ed25519_token,
            SkipReason::KeyOperationsMismatch,
        ),
    ];
    for (jwk, members, token, reason) in cases {
        let jwk = with_members(jwk, &members);
        let document = json!({ "keys": [jwk, other.jwk("other")] }).to_string();
        let (_, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        assert_eq!(
            skipped
                .iter()
                .map(|skip| (skip.kid.as_deref(), skip.reason))
                .collect::<Vec<_>>(),
            [(Some("k"), reason)],
            "{members}"
        );
        // The certificate's own genuine token finds no key under its kid.
        let verifier = builder(serving(document), Arc::new(clock.clone()))
            .build()
            .unwrap();
        let outcome = verifier.verify::<Value>(token).await;
        assert!(
            matches!(
                outcome,
                Err(VerifyError::InvalidToken(InvalidToken::UnknownKid))
            ),
            "{members}: {outcome:?}"
        );
    }
    // Members that agree with the certificate: the same tokens verify.
    for (jwk, token) in [
        (
            with_members(
                p256.jwk("k"),
                &json!({ "crv": "P-256", "alg": "ES256", "key_ops": ["sign", "verify"] }),
            ),
            &p256_token,
        ),
        (
            with_members(
                ed25519_jwk.clone(),
                &json!({ "crv": "Ed25519", "alg": "EdDSA", "key_ops": ["verify"] }),
            ),
            &ed25519_token,
        ),
    ] {
        let document = json!({ "keys": [jwk, other.jwk("other")] }).to_string();
        let verifier = builder(serving(document), Arc::new(clock.clone()))
            .build()
            .unwrap();
        let claims: Value = verifier.verify(token).await.unwrap();
        assert_eq!(claims["sub"], "user-1");
    }
}

#[test]
fn a_crv_on_an_rsa_key_is_ignored_as_rsa_members_ignore_it() {
    // RSA defines no curve: a `crv` there is a member RSA does not understand (RFC 7517 §4),
    // for a key given as a certificate as for one given by its members.
    let usable = |jwk: Value| {
        let document = json!({ "keys": [jwk] }).to_string();
        KeySet::explain(document.as_bytes()).unwrap().0.len()
    };
    let certificate = Certified::new(&rcgen::PKCS_RSA_SHA256, Algorithm::RS256).jwk("k");
    assert_eq!(
        usable(with_members(certificate, &json!({ "crv": "P-256" }))),
        1
    );
    let members = jwkstash_jwks::testkit::TestKey::rsa("k").public_jwk();
    assert_eq!(usable(with_members(members, &json!({ "crv": "P-256" }))), 1);
}

#[test]
fn key_operations_must_be_ones_the_key_type_takes_part_in() {
    let reason = |jwk: Value| {
        let document = json!({ "keys": [jwk] }).to_string();
        let (usable, skipped) = KeySet::explain(document.as_bytes()).unwrap();
        (usable.len(), skipped.first().map(|skip| skip.reason))
    };
    let rsa = Certified::new(&rcgen::PKCS_RSA_SHA256, Algorithm::RS256).jwk("k");
    let p256 = Certified::p256().jwk("k");
    for (jwk, ops, expected) in [
        // RSA encrypts and wraps keys; EC agrees on keys; every type signs.
        (&rsa, json!(["verify", "encrypt", "wrapKey"]), (1, None)),
        (
            &rsa,
            json!(["verify", "deriveBits"]),
            (0, Some(SkipReason::KeyOperationsMismatch)),
        ),
        (&p256, json!(["verify", "deriveKey"]), (1, None)),
        (
            &p256,
            json!(["verify", "unwrapKey"]),
            (0, Some(SkipReason::KeyOperationsMismatch)),
        ),
        (&p256, json!(["verify", "x-private-op"]), (1, None)),
        (
            &p256,
            json!(["encrypt"]),
            (0, Some(SkipReason::NoVerifyOperation)),
        ),
    ] {
        assert_eq!(
            reason(with_members(jwk.clone(), &json!({ "key_ops": ops }))),
            expected,
            "{ops}"
        );
    }
    // A key given by its members is held to the same rule.
    let members = jwkstash_jwks::testkit::TestKey::ed25519("k").public_jwk();
    assert_eq!(
        reason(with_members(
            members,
            &json!({ "key_ops": ["verify", "decrypt"] })
        )),
        (0, Some(SkipReason::KeyOperationsMismatch))
    );
}
