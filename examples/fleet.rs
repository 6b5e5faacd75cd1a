//! A fleet of eight verifiers sharing one Redis: the identity provider sees one request for all
//! of them, on a cold start and again after a rotation.
//!
//! ```sh
//! docker compose up -d redis        # or any redis-server with a password
//! export JWKSTASH_HMAC_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
//! REDIS_URL=redis://:change-me@127.0.0.1:6379 cargo run --example fleet --features redis,testkit
//! ```
//!
//! Without a reachable Redis every instance works alone (and fetches once itself).

use std::sync::Arc;

use jwkstash::testkit::{Idp, TestKey};
use jwkstash::{RedisCache, Verifier};
use serde_json::Value;

const INSTANCES: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // The fleet's HMAC secret comes from the environment (a secret store in production), never
    // from Redis. Without one, this demo makes a random one: its instances share a process.
    let secret = std::env::var("JWKSTASH_HMAC_SECRET").unwrap_or_else(|_| {
        println!("JWKSTASH_HMAC_SECRET is not set: using a random secret for this run");
        (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect()
    });
    let idp = Idp::start().await?;
    let prefix = format!("jwkstash-example-{}", std::process::id());

    let mut fleet = Vec::new();
    for _ in 0..INSTANCES {
        // Each instance has its own connection, as each pod would.
        let redis = RedisCache::builder()
            .url(url.as_str())
            .prefix(prefix.as_str())
            .hmac_secret(secret.as_bytes().to_vec())
            .build()
            .await?;
        fleet.push(
            idp.verifier_builder()
                .shared_tier(Arc::new(redis))
                .build()?,
        );
    }

    let cold = verify_everywhere(&fleet, &idp.mint(), 1000).await?;
    println!(
        "cold start: {cold} verifications on {INSTANCES} instances, {} upstream request(s)",
        idp.jwks_requests()
    );

    idp.rotate(TestKey::ec_p256("key-2"));
    let before = idp.jwks_requests();
    let rotated = verify_everywhere(&fleet, &idp.mint(), 1000).await?;
    println!(
        "rotation:   {rotated} verifications with the new kid, {} upstream request(s)",
        idp.jwks_requests() - before
    );
    Ok(())
}

async fn verify_everywhere(
    fleet: &[Verifier],
    token: &str,
    count: usize,
) -> Result<usize, Box<dyn std::error::Error>> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (verifier, token) = (fleet[i % fleet.len()].clone(), token.to_owned());
            tokio::spawn(async move { verifier.verify::<Value>(&token).await })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(count)
}
