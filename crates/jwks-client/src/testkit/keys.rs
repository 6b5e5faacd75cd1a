//! Real keys (RSA 2048, EC P-256/P-384, Ed25519) generated with aws-lc, and token signing with
//! full control over the header and payload bytes.

use crate::jose::alg::Algorithm;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding (panics on bad input: for tests).
pub fn b64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A JWKS document of the public halves of `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>() })
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A signing key with its `kid` and algorithm.
pub struct TestKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// A fresh RSA-2048 key signing RS256.
    pub fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        Self::new(kid, Algorithm::RS256, Pair::Rsa(pair))
    }

    /// A fresh P-256 key signing ES256.
    pub fn ec_p256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("P-256 key generation");
        Self::new(kid, Algorithm::ES256, Pair::Ec(pair))
    }

    /// A fresh P-384 key signing ES384.
    pub fn ec_p384(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
            .expect("P-384 key generation");
        Self::new(kid, Algorithm::ES384, Pair::Ec(pair))
    }

    /// A fresh Ed25519 key signing EdDSA.
    pub fn ed25519(kid: &str) -> Self {
        let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        Self::new(kid, Algorithm::EdDSA, Pair::Ed(pair))
    }

    fn new(kid: &str, alg: Algorithm, pair: Pair) -> Self {
        Self {
            kid: kid.to_owned(),
            alg,
            pair,
        }
    }

    /// The same key signing with another algorithm of its family (RS384, PS256, ...).
    #[must_use]
    pub fn with_alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// The same key under another `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: &str) -> Self {
        kid.clone_into(&mut self.kid);
        self
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK: `kty`, `kid`, `use: sig`, `alg`, and the key members.
    pub fn public_jwk(&self) -> Value {
        let alg = serde_json::to_value(self.alg).expect("algorithm name");
        let mut jwk = match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let width = (point.len() - 1) / 2;
                let crv = if width == 32 { "P-256" } else { "P-384" };
                json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64(&point[1..=width]),
                    "y": b64(&point[1 + width..]),
                })
            }
            Pair::Ed(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = alg;
        jwk
    }

    /// The public key as DER (SubjectPublicKeyInfo), as an attacker would find it published.
    pub fn public_key_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: Result<PublicKeyX509Der<'static>, _> = match &self.pair {
            Pair::Rsa(pair) => pair.public_key().as_der(),
            Pair::Ec(pair) => pair.public_key().as_der(),
            Pair::Ed(pair) => pair.public_key().as_der(),
        };
        der.expect("public key DER").as_ref().to_vec()
    }

    /// The raw signature of `message` with this key's algorithm.
    pub fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut signature)
                    .expect("RSA signing");
                signature
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of exactly these header and payload bytes.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature = self.signature(message.as_bytes());
        format!("{message}.{}", b64(signature))
    }

    /// A compact JWS with `header` and `claims` as JSON.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// A token with the header `{"alg", "kid", "typ": "JWT"}` and these claims.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg, "kid": self.kid, "typ": "JWT" });
        self.sign_with_header(&header, claims)
    }
}
