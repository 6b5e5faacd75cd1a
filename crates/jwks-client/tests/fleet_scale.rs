//! A fleet member with 10,000 issuers resolved on first sight, all on one shared tier: one
//! invalidation listener serves them all, a message wakes the one verifier whose entry it
//! names, and lost messages re-read each held entry once. The listener's memory (live heap,
//! counting allocator) and dispatch time are printed with `--nocapture` for BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "alloc/mod.rs"]
mod alloc;
#[path = "it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use alloc::live;
use common::TestTier;
use jwkstash_core::{Directory, Invalidation, Invalidations, unix_millis};
use jwkstash_jwks::testkit::{TestKey, eventually, jwks};
use jwkstash_jwks::{Issuers, SharedKeySetTier, StaticKeySource, Verifier, VerifierBuilder};
use jwkstash_memory::MemoryCache;
use serde_json::{Value, json};

const ISSUERS: usize = 10_000;

fn issuer(n: usize) -> String {
    format!("https://tenant-{n}.example.com/")
}

fn token(key: &TestKey, n: usize) -> String {
    let now = unix_millis(std::time::SystemTime::now()) / 1000;
    key.sign(&json!({
        "iss": issuer(n), "aud": "api", "sub": "user", "iat": now, "exp": now + 3600
    }))
}

/// A registry resolving every `tenant-N` issuer, each with its own set, on `shared` if given.
fn registry(key: &TestKey, shared: Option<SharedKeySetTier>) -> Issuers {
    let published = jwks(&[key]).to_string();
    Issuers::new().resolver(move |_: &str, builder: VerifierBuilder| {
        let source = StaticKeySource::from_json(published.clone()).ok()?;
        let builder = builder.key_source(source).audience("api");
        Some(match &shared {
            Some(shared) => builder.shared_tier(Arc::clone(shared)),
            None => builder,
        })
    })
}

/// Resolves every issuer with one token each; returns the live heap it added per issuer.
async fn resolve_all(issuers: &Issuers, tokens: &[String]) -> isize {
    let before = live();
    for token in tokens {
        issuers.verify::<Value>(token).await.unwrap();
    }
    (live() - before) / tokens.len() as isize
}

/// The entry name each issuer's verifier announced in the shared tier's directory.
async fn entries(tier: &TestTier) -> std::collections::HashMap<String, String> {
    let announced = tier.announced().await.unwrap();
    announced
        .into_iter()
        .map(|(entry, about)| {
            let about: Value = serde_json::from_str(&about).unwrap();
            (about["issuers"][0].as_str().unwrap().to_owned(), entry)
        })
        .collect()
}

fn heard(verifiers: &[Verifier]) -> u64 {
    verifiers
        .iter()
        .map(|verifier| verifier.stats().invalidations_heard)
        .sum()
}

// One thread: the messages of the lag below are published before the listener runs again.
#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_issuers_share_one_listener_and_a_message_wakes_one_verifier() {
    let key = TestKey::ed25519("k1");
    let tokens: Vec<String> = (0..ISSUERS).map(|n| token(&key, n)).collect();

    // For comparison: the same issuers (a thousand of them) without a shared tier.
    let alone = registry(&key, None);
    let per_issuer_alone = resolve_all(&alone, &tokens[..1000]).await;
    drop(alone);

    let tier = TestTier::new(
        MemoryCache::builder()
            .max_capacity(2 * ISSUERS as u64)
            .build(),
    );
    let shared: SharedKeySetTier = Arc::new(tier.clone());
    let issuers = registry(&key, Some(Arc::clone(&shared)));
    let per_issuer_shared = resolve_all(&issuers, &tokens).await;
    assert_eq!(issuers.len(), ISSUERS);
    assert_eq!(
        tier.subscriptions.load(Ordering::SeqCst),
        1,
        "one listener for every verifier on the tier"
    );
    eprintln!(
        "live heap per resolved issuer: {per_issuer_alone} B alone, {per_issuer_shared} B on \
         a shared tier (the difference is the fleet member: its route on the one listener, \
         its lease and directory state)"
    );

    let verifiers: Vec<Verifier> = (0..ISSUERS)
        .map(|n| issuers.get(&issuer(n)).unwrap())
        .collect();
    let entries = entries(&tier).await;
    assert_eq!(entries.len(), ISSUERS, "every verifier announced its entry");
    let before = heard(&verifiers);

    // One message: the verifier of its entry wakes, and no other.
    let target = 1234;
    tier.publish(Invalidation::new(&entries[&issuer(target)], u64::MAX - 1))
        .await
        .unwrap();
    eventually("the named verifier woke", || {
        verifiers[target].stats().invalidations_heard == 1
    })
    .await;
    // Let any other wake-up land before counting.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(heard(&verifiers) - before, 1, "other verifiers woke");

    // Dispatch: one message for each issuer, in batches that the channel (64) holds; each
    // batch waits until its verifiers woke (read from those 50 alone, so that the count costs
    // little beside the listener).
    let started = Instant::now();
    let cpu_started = cpu_time();
    let woke_before: Vec<u64> = verifiers
        .iter()
        .map(|verifier| verifier.stats().invalidations_heard)
        .collect();
    for batch in (0..ISSUERS).collect::<Vec<_>>().chunks(50) {
        for &n in batch {
            tier.publish(Invalidation::new(&entries[&issuer(n)], u64::MAX - 1))
                .await
                .unwrap();
        }
        eventually("the batch was heard", || {
            batch
                .iter()
                .all(|&n| verifiers[n].stats().invalidations_heard > woke_before[n])
        })
        .await;
    }
    let per_message = started.elapsed() / ISSUERS as u32;
    let cpu_per_message = (cpu_time() - cpu_started) / ISSUERS as u32;
    assert_eq!(heard(&verifiers) - before, 1 + ISSUERS as u64);
    eprintln!(
        "dispatch of {ISSUERS} messages to {ISSUERS} verifiers: {per_message:?} wall, \
         {cpu_per_message:?} CPU (process) per message, each waking one verifier"
    );

    // Lost messages: every held entry is read again, each once.
    let before = heard(&verifiers);
    for _ in 0..200 {
        tier.publish(Invalidation::new("jwks:none", 1))
            .await
            .unwrap();
    }
    eventually("the lag was noticed", || {
        heard(&verifiers) >= before + ISSUERS as u64
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(heard(&verifiers) - before, ISSUERS as u64);
}

/// User plus system CPU time of this process.
fn cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // The kernel's USER_HZ is 100 on Linux.
    std::time::Duration::from_millis(ticks * 10)
}
