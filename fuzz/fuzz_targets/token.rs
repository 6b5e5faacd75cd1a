//! Arbitrary bytes as a token against a verifier with a real key set: never a panic, and
//! nothing but a typed refusal (no token here can carry a valid signature).
#![no_main]

use std::sync::{Arc, OnceLock};

use jwkstash::testkit::{StaticSource, TestKey, jwks};
use jwkstash::Verifier;
use jwkstash::clock::ManualClock;
use libfuzzer_sys::fuzz_target;

struct Harness {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let keys = [
            TestKey::ed25519("k1"),
            TestKey::ec_p256("k2"),
            TestKey::rsa("k3"),
            TestKey::ed25519("k5").with_alg(jwkstash::keys::Algorithm::Ed25519),
        ];
        let mut document = jwks(&keys.iter().collect::<Vec<_>>());
        // A P-521 key, so that ES512 signatures (checked with aws-lc, not jsonwebtoken) are
        // reached too; the testkit makes none.
        if let Some(keys) = document["keys"].as_array_mut() {
            keys.push(serde_json::json!({
                "kty": "EC", "crv": "P-521", "kid": "k4", "use": "sig", "alg": "ES512",
                "x": "AeyKQJtDQfSV0bR1hWkcK6IdkWsE_0A7WJdP5Ycrh0LINltGYm-sQipyG12CjgINrgpNSAA409PphojZLMLa0yY7",
                "y": "AScco4lm_XSVIx0QKWtfj35e8MuLWRYkXLGNOTDhO6eNzrBsviXy5rcO-NWY_-qOPzbG-w5022AARNkGpJzzPaTM",
            }));
        }
        let document = document.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let verifier = runtime.block_on(async {
            Verifier::builder()
                .key_source(StaticSource::new(document))
                .issuer("https://fuzz.test/")
                .audience("fuzz")
                .clock(Arc::new(ManualClock::default()))
                .build()
                .unwrap()
        });
        Harness { runtime, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let harness = harness();
    let outcome = harness.runtime.block_on(harness.verifier.verify::<serde_json::Value>(token));
    assert!(outcome.is_err());
});
