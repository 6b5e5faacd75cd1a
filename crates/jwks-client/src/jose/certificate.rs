//! The public key of a JWK's `x5c` leaf certificate, and the certificate's thumbprints.
//!
//! Only the key is taken from the certificate: no chain, validity period or name is checked,
//! because trust in the key set comes from where it was fetched (the configured URL over TLS),
//! as for a key given by its members. `x5c` in a token's header is never read.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha256};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use crate::jose::error::SkipReason;

/// A certificate longer than this (DER bytes) is refused.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// `x5c` members are standard base64 (RFC 7517 §4.7), with or without padding.
const X5C_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The public key of a certificate, in the members a JWK would give it.
pub(crate) enum CertifiedKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Okp {
        crv: &'static str,
        x: Vec<u8>,
    },
}

/// The leaf certificate of an `x5c` chain: its key and thumbprints.
pub(crate) struct Leaf {
    pub(crate) key: CertifiedKey,
    /// SHA-1 of the DER (`x5t`).
    pub(crate) x5t: [u8; 20],
    /// SHA-256 of the DER (`x5t#S256`).
    pub(crate) x5t_s256: [u8; 32],
}

/// Reads the first certificate of an `x5c` chain.
pub(crate) fn leaf(x5c: &[String]) -> Result<Leaf, SkipReason> {
    let first = x5c.first().ok_or(SkipReason::Certificate)?;
    // The text bound keeps decoding cheap; the exact bound is on the decoded bytes.
    if first.len() > MAX_CERTIFICATE_BYTES.div_ceil(3) * 4 {
        return Err(SkipReason::Certificate);
    }
    let der = X5C_BASE64
        .decode(first)
        .map_err(|_| SkipReason::Certificate)?;
    if der.len() > MAX_CERTIFICATE_BYTES {
        return Err(SkipReason::Certificate);
    }
    let (rest, certificate) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|_| SkipReason::Certificate)?;
    if !rest.is_empty() {
        return Err(SkipReason::Certificate);
    }
    let key = key_of(certificate.public_key())?;
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    let mut x5t = [0u8; 20];
    x5t.copy_from_slice(sha1.as_ref());
    Ok(Leaf {
        key,
        x5t,
        x5t_s256: Sha256::digest(&der).into(),
    })
}

fn key_of(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<CertifiedKey, SkipReason> {
    let algorithm = &spki.algorithm.algorithm;
    let key = spki.subject_public_key.data.as_ref();
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(SkipReason::Certificate);
        };
        return Ok(CertifiedKey::Rsa {
            n: rsa.modulus.to_vec(),
            e: rsa.exponent.to_vec(),
        });
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(CertifiedKey::Okp {
            crv: "Ed25519",
            x: key.to_vec(),
        });
    }
    if *algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(SkipReason::UnsupportedKeyType);
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.as_oid().ok())
        .ok_or(SkipReason::Certificate)?;
    let (crv, width) = if curve == OID_EC_P256 {
        ("P-256", 32)
    } else if curve == OID_NIST_EC_P384 {
        ("P-384", 48)
    } else if curve == OID_NIST_EC_P521 {
        ("P-521", 66)
    } else {
        return Err(SkipReason::UnsupportedCurve);
    };
    // Uncompressed points only: 0x04, x, y.
    match key.split_first() {
        Some((0x04, coordinates)) if coordinates.len() == 2 * width => {
            let (x, y) = coordinates.split_at(width);
            Ok(CertifiedKey::Ec {
                crv,
                x: x.to_vec(),
                y: y.to_vec(),
            })
        }
        _ => Err(SkipReason::BadCoordinates),
    }
}
