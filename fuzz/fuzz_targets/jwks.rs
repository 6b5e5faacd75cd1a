//! Arbitrary bytes as a JWKS document: parsing never panics, and a parsed set only holds keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = jwkstash::keys::KeySet::parse(data.to_vec()) {
        assert!(!set.keys().is_empty());
    }
});
