//! The three tiers together, memory over Redis over file, against a real `redis-server` and a
//! real provider on 127.0.0.1: a fleet member that never fetched keeps what the fleet fetched
//! in its snapshot, and a restart with both Redis and the provider down verifies from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jwkstash::testkit::{Behaviour, Idp, TestKey};
use jwkstash::{RedisCache, Verifier};
use jwkstash_core::ManualClock;
use jwkstash_redis::testkit::RedisServer;
use serde_json::Value;

async fn member(idp: &Idp, redis: &RedisServer, clock: &ManualClock, dir: &Path) -> Verifier {
    let shared = RedisCache::builder()
        .url(redis.url())
        .prefix("layers")
        .hmac_secret(b"the fleet's shared secret".to_vec())
        .clock(Arc::new(clock.clone()))
        .circuit(1, Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    idp.verifier_builder()
        .clock(Arc::new(clock.clone()))
        .shared_tier(Arc::new(shared))
        .snapshot_dir(dir)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_with_redis_and_the_provider_down_verifies_from_its_snapshot() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let idp = Idp::builder()
        .key(TestKey::ec_p256("key-1"))
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let (fetcher_dir, reader_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // One member fetches; the other only reads what the fleet has in Redis.
    let fetcher = member(&idp, &redis, &clock, fetcher_dir.path()).await;
    fetcher.verify::<Value>(&idp.mint()).await.unwrap();
    let reader = member(&idp, &redis, &clock, reader_dir.path()).await;
    reader.verify::<Value>(&idp.mint()).await.unwrap();
    assert_eq!(reader.stats().shared_hits, 1);
    assert_eq!(idp.jwks_requests(), 1);
    drop((fetcher, reader));

    // Everything upstream of the process is gone.
    redis.kill().await;
    idp.set_behaviour(Behaviour::Status(503));
    clock.advance(Duration::from_secs(120));
    let restarted = member(&idp, &redis, &clock, reader_dir.path()).await;
    for _ in 0..5 {
        restarted.verify::<Value>(&idp.mint()).await.unwrap();
    }
    let stats = restarted.stats();
    assert_eq!((stats.snapshot_hits, stats.shared_hits), (1, 0));
    assert_eq!(idp.jwks_requests(), 1);
}
