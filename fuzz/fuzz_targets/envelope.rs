//! Arbitrary bytes as a stored entry (a Redis value, a snapshot file): opening never panics,
//! and with a secret nothing opens that the secret did not seal.
#![no_main]

use std::time::{Duration, SystemTime};

use jwkstash::tier::envelope;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"the fuzzer's secret, 32 bytes...";

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let skew = Duration::from_secs(5);
    let _ = envelope::open("jwks:key", data, &[] as &[&[u8]], now, skew);
    // Random bytes carry a valid HMAC-SHA256 tag with probability 2^-256.
    assert!(envelope::open("jwks:key", data, &[SECRET], now, skew).is_err());
});
