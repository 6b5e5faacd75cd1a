//! Memory bounds, measured with a counting allocator: a megabyte of dots costs nothing beyond
//! the limit, and a flood of 100,000 distinct unknown kids grows the heap by less than 4 MiB.
#![allow(clippy::unwrap_used)]

#[path = "alloc/mod.rs"]
mod alloc;
#[path = "it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use alloc::{SERIAL, live, peak, reset_peak};
use common::*;
use jwkstash_core::{MockKeySource, TokioClock};
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{InvalidToken, VerifyError};
use serde_json::{Value, json};

#[tokio::test(start_paused = true)]
async fn a_megabyte_of_dots_costs_only_the_size_check() {
    let _serial = SERIAL.lock().await;
    let clock = TokioClock::new();
    let verifier = builder(silent_source(), Arc::new(clock.clone()))
        .build()
        .unwrap();
    let dots = ".".repeat(1024 * 1024);
    let before = live();
    reset_peak();
    let error = verifier.verify::<Value>(&dots).await.unwrap_err();
    let extra = peak() - before;
    assert!(matches!(
        error,
        VerifyError::InvalidToken(InvalidToken::TooLarge { .. })
    ));
    assert!(
        extra < 16 * 1024,
        "refusing 1 MB of dots allocated {extra} bytes"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_distinct_unknown_kids_stays_under_four_mebibytes() {
    let _serial = SERIAL.lock().await;
    let key = TestKey::ed25519("k1");
    let clock = TokioClock::new();
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(&[&key]);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    let verifier = builder(source, Arc::new(clock.clone())).build().unwrap();
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    // Tokens are made ahead so that only the verifier's own memory is measured.
    let claims = claims(&clock);
    let forged: Vec<String> = (0..100_000)
        .map(|i| {
            key.sign_with_header(
                &json!({ "alg": "EdDSA", "kid": format!("flood-{i:08}-{}", "x".repeat(40)) }),
                &claims,
            )
        })
        .collect();
    let before = live();
    for (i, token) in forged.iter().enumerate() {
        assert!(verifier.verify::<Value>(token).await.is_err());
        if i % 10_000 == 0 {
            // Cross cooldowns now and then, so that refetches and absent-kid records happen.
            tokio::time::advance(Duration::from_secs(31)).await;
        }
    }
    let grown = live() - before;
    println!(
        "100,000 distinct unknown kids: heap grew by {grown} bytes ({:.2} MiB)",
        grown as f64 / 1048576.0
    );
    assert!(grown < 4 * 1024 * 1024, "the heap grew by {grown} bytes");
    assert!(verifier.stats().unknown_kid_suppressed > 90_000);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_issuers_cost_little_and_leave_nothing_when_removed() {
    let _serial = SERIAL.lock().await;
    let key = TestKey::ed25519("k1");
    let clock = TokioClock::new();
    let document = jwkstash_jwks::testkit::jwks(&[&key]).to_string();
    let near: jwkstash_jwks::KeySetTier = Arc::new(
        jwkstash_memory::MemoryCache::builder()
            .clock(Arc::new(clock.clone()))
            .max_capacity(10_000)
            .build(),
    );
    let issuers = jwkstash_jwks::Issuers::with_near_tier(near);
    let names: Vec<String> = (0..1000)
        .map(|i| format!("https://tenant-{i}.test/"))
        .collect();
    let tokens: Vec<String> = names
        .iter()
        .map(|issuer| {
            let mut claims = claims(&clock);
            claims["iss"] = json!(issuer);
            key.sign(&claims)
        })
        .collect();
    let before = live();
    for issuer in &names {
        let verifier = issuers
            .verifier_builder()
            .key_source(jwkstash_jwks::testkit::StaticSource::new(document.clone()))
            .issuer(issuer.as_str())
            .audience(AUDIENCE)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        issuers.insert(verifier);
    }
    for token in &tokens {
        issuers.verify::<Value>(token).await.unwrap();
    }
    let with_issuers = live() - before;
    for issuer in &names {
        issuers.remove(issuer);
    }
    // Let aborted tasks and moka's pending work settle.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let left = live() - before;
    println!(
        "1,000 issuers, each with a loaded key set: {:.1} KiB per issuer; after removal {:.1} KiB per issuer remain (the shared near tier)",
        with_issuers as f64 / 1000.0 / 1024.0,
        left as f64 / 1000.0 / 1024.0
    );
    assert!(
        with_issuers < 1000 * 16 * 1024,
        "{with_issuers} bytes for 1,000 issuers"
    );
    assert!(
        left < with_issuers / 2,
        "removing the issuers freed too little: {left} of {with_issuers}"
    );
}
