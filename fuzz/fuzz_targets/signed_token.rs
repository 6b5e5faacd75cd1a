//! Arbitrary header and payload bytes under a genuine signature: the checks behind the
//! signature (strict JSON in full, claims, `typ`, JWE members) never panic, and a token is
//! accepted only if its header and payload are valid UTF-8 JSON objects.
#![no_main]

use std::sync::{Arc, OnceLock};

use jwkstash::testkit::{StaticSource, TestKey, jwks};
use jwkstash::Verifier;
use jwkstash::clock::ManualClock;
use libfuzzer_sys::fuzz_target;

struct Harness {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
    key: TestKey,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let key = TestKey::ed25519("k1");
        let document = jwks(&[&key]).to_string();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let verifier = Verifier::builder()
            .key_source(StaticSource::new(document))
            .issuer("https://fuzz.test/")
            .audience("fuzz")
            .clock(Arc::new(ManualClock::default()))
            .require_exp(false)
            .any_audience()
            .build()
            .unwrap();
        Harness { runtime, verifier, key }
    })
}

/// Whether `bytes` is valid UTF-8 and a JSON object by serde_json's own strict parse.
fn strict_object(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
        && serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|value| value.is_object())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = usize::from(split).min(rest.len());
    let (header, payload) = rest.split_at(at);
    let harness = harness();
    let token = harness.key.sign_raw(header, payload);
    let outcome = harness.runtime.block_on(harness.verifier.verify::<serde_json::Value>(&token));
    if outcome.is_ok() {
        assert!(strict_object(header), "accepted a header that is not strict JSON");
        assert!(strict_object(payload), "accepted a payload that is not strict JSON");
    }
});
