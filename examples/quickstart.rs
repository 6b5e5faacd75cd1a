//! The main demonstration: an embedded identity provider on 127.0.0.1, a verifier with the
//! in-process tier, 10,000 verifications from 100 concurrent tasks, a key rotation, and a report.
//!
//! Run with `cargo run --example quickstart --features testkit`.

use std::time::{Duration, Instant};

use jwkstash::testkit::{Idp, TestKey};
use serde::Deserialize;
use serde_json::json;

const TASKS: usize = 100;
const PER_TASK: usize = 100;
const DISTINCT_TOKENS: usize = 200;

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = Idp::start().await?;
    println!(
        "identity provider: {} (JWKS {})",
        idp.issuer(),
        idp.jwks_url()
    );
    let verifier = idp.verifier_builder().build()?;

    let before = verify_concurrently(&verifier, &idp).await?;
    let fetches_before_rotation = idp.jwks_requests();

    // The provider rotates: the old key leaves the set, a new one signs.
    let old_token = idp.mint();
    idp.rotate(TestKey::rsa("key-2"));
    let after = verify_concurrently(&verifier, &idp).await?;
    let old_refused = verifier.verify::<Claims>(&old_token).await.is_err();

    let stats = verifier.stats();
    let mut latencies = before.latencies;
    latencies.extend(after.latencies);
    latencies.sort_unstable();
    println!();
    println!(
        "validations            {}",
        before.verified + after.verified
    );
    println!(
        "upstream fetches       {fetches_before_rotation} before rotation, {} in all",
        idp.jwks_requests()
    );
    println!("hit ratio              {:.4}", stats.hit_ratio());
    println!("verify latency p50     {:?}", percentile(&latencies, 0.50));
    println!("verify latency p99     {:?}", percentile(&latencies, 0.99));
    println!("old key refused        {old_refused}");
    println!(
        "wall time              {:?} + {:?}",
        before.elapsed, after.elapsed
    );
    println!("stats                  {stats:?}");
    if fetches_before_rotation != 1 || idp.jwks_requests() != 2 || !old_refused {
        return Err("unexpected upstream behaviour".into());
    }
    Ok(())
}

struct Run {
    verified: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// 100 tasks verify 100 tokens each, drawn from a pool of freshly minted tokens.
async fn verify_concurrently(
    verifier: &jwkstash::Verifier,
    idp: &Idp,
) -> Result<Run, Box<dyn std::error::Error>> {
    let tokens: Vec<String> = (0..DISTINCT_TOKENS)
        .map(|i| idp.mint_with(json!({ "sub": format!("user-{i}") })))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let verifier = verifier.clone();
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let token = &tokens[(task * PER_TASK + i) % tokens.len()];
                let start = Instant::now();
                let claims: Claims = verifier.verify(token).await?;
                latencies.push(start.elapsed());
                debug_assert!(claims.sub.starts_with("user-"));
            }
            Ok::<_, jwkstash::VerifyError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(TASKS * PER_TASK);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run {
        verified: latencies.len(),
        latencies,
        elapsed: started.elapsed(),
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}
