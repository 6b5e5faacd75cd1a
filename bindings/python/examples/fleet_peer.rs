//! A Rust verifier on a shared Redis tier, driven over stdin/stdout: the Rust member of the
//! cross-language fleet test (`tests/test_fleet.py`). It is built with the facade's own
//! builders, exactly as a Rust service would build it.
//!
//! ```sh
//! JWKSTASH_HMAC_SECRET=... [JWKSTASH_PEER_MIN_REFRESH_MS=200] cargo run -p jwkstash-python --example fleet_peer -- \
//!     JWKS_URL ISSUER AUDIENCE REDIS_URL PREFIX
//! ```
//!
//! It prints `ready`, then answers each line of stdin with one line:
//!
//! | line | answer |
//! |---|---|
//! | `verify TOKEN` | `ok`, `err CODE` (the rule that refused it) or `err unavailable` |
//! | `refresh` | `refreshed fetched=true|false` or `err unavailable` |
//! | `kids` | the kids of the set held now, space-separated (`-` for a key without one) |
//! | `stats` | `fetches=N shared_hits=N invalidations_heard=N` |
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use jwkstash::{FreshnessPolicy, RedisCache, Verifier, VerifyError};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [jwks_url, issuer, audience, redis_url, prefix] = args.as_slice() else {
        eprintln!("usage: fleet_peer JWKS_URL ISSUER AUDIENCE REDIS_URL PREFIX");
        std::process::exit(2);
    };
    let secret = std::env::var("JWKSTASH_HMAC_SECRET").expect("JWKSTASH_HMAC_SECRET is set");
    // The tests refresh from both languages in a row: a shorter `min_refresh_interval` than
    // the default 5 s keeps them quick.
    let mut policy = FreshnessPolicy::default();
    if let Ok(millis) = std::env::var("JWKSTASH_PEER_MIN_REFRESH_MS") {
        policy = policy.min_refresh_interval(Duration::from_millis(millis.parse().unwrap()));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let verifier = runtime.block_on(async {
        let redis = RedisCache::builder()
            .url(redis_url.as_str())
            .prefix(prefix.as_str())
            .hmac_secret(secret.into_bytes())
            .build()
            .await
            .unwrap();
        Verifier::builder()
            .jwks_url(jwks_url.as_str())
            .allow_http_loopback()
            .issuer(issuer.as_str())
            .audience(audience.as_str())
            .shared_tier(Arc::new(redis))
            .policy(policy)
            .build()
            .unwrap()
    });
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (command, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match command {
            "verify" => match runtime.block_on(verifier.verify::<Value>(argument)) {
                Ok(_) => "ok".to_owned(),
                Err(VerifyError::InvalidToken(reason)) => format!("err {}", reason.code()),
                Err(_) => "err unavailable".to_owned(),
            },
            "refresh" => match runtime.block_on(verifier.refresh()) {
                Ok(refreshed) => format!("refreshed fetched={}", refreshed.fetched),
                Err(_) => "err unavailable".to_owned(),
            },
            "kids" => match runtime.block_on(verifier.key_set()) {
                Ok(set) => set
                    .keys()
                    .iter()
                    .map(|key| key.kid().unwrap_or("-"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(_) => "err unavailable".to_owned(),
            },
            "stats" => {
                let stats = verifier.stats();
                format!(
                    "fetches={} shared_hits={} invalidations_heard={}",
                    stats.fetches, stats.shared_hits, stats.invalidations_heard
                )
            }
            other => format!("err unknown command {other:?}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}
