//! The snapshot tier under a verifier, over a real directory and a real provider on 127.0.0.1:
//! a verifier started while the provider is down verifies with the set an earlier verifier
//! kept, fresh without a request, stale within `max_stale` (refreshed once the provider is
//! back), never past it, and never with another issuer's set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jwkstash_core::ManualClock;
use jwkstash_file::FileCache;
use jwkstash_jwks::testkit::{Behaviour, Idp, TestKey, eventually};
use jwkstash_jwks::{Verifier, VerifyError};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);
const SECRET: &[u8] = b"the snapshot secret, 32 bytes...";

async fn idp(clock: &ManualClock) -> Idp {
    let idp = Idp::builder()
        .key(TestKey::ec_p256("key-1"))
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    // The verifier's own TTL (10 min) and max_stale (1 h) apply.
    idp.set_max_age(None);
    idp
}

fn verifier(idp: &Idp, clock: &ManualClock, dir: &Path) -> Verifier {
    idp.verifier_builder()
        .clock(Arc::new(clock.clone()))
        .snapshot_dir(dir)
        .build()
        .unwrap()
}

/// A verifier that fetched once and wrote its snapshot, then went away.
async fn first_life(idp: &Idp, clock: &ManualClock, dir: &Path) {
    let first = verifier(idp, clock, dir);
    first.verify::<Value>(&idp.mint()).await.unwrap();
    assert_eq!(idp.jwks_requests(), 1);
}

#[tokio::test]
async fn a_fresh_snapshot_serves_a_restart_without_any_request() {
    let clock = ManualClock::default();
    let (idp, dir) = (idp(&clock).await, tempfile::tempdir().unwrap());
    first_life(&idp, &clock, dir.path()).await;
    idp.set_behaviour(Behaviour::Status(503));
    clock.advance(5 * MINUTE);
    let restarted = verifier(&idp, &clock, dir.path());
    for _ in 0..10 {
        restarted.verify::<Value>(&idp.mint()).await.unwrap();
    }
    let stats = restarted.stats();
    assert_eq!((stats.snapshot_hits, stats.stale_served), (1, 0));
    assert_eq!(idp.jwks_requests(), 1, "the restart asked the provider");
}

#[tokio::test]
async fn a_stale_snapshot_is_served_and_refreshed_once_the_provider_returns() {
    let clock = ManualClock::default();
    let (idp, dir) = (idp(&clock).await, tempfile::tempdir().unwrap());
    first_life(&idp, &clock, dir.path()).await;
    idp.set_behaviour(Behaviour::Status(503));
    // Past the TTL (10 min), within max_stale (1 h).
    clock.advance(30 * MINUTE);
    let restarted = verifier(&idp, &clock, dir.path());
    restarted.verify::<Value>(&idp.mint()).await.unwrap();
    let stats = restarted.stats();
    assert_eq!((stats.snapshot_hits, stats.stale_served), (1, 1));
    // The background refresh asked the provider, which is still down; tokens still verify.
    eventually("the failed refresh", || {
        restarted.stats().fetch_failures == 1
    })
    .await;
    restarted.verify::<Value>(&idp.mint()).await.unwrap();
    // The provider is back: the next verification after the backoff refreshes the set.
    idp.set_behaviour(Behaviour::Serve);
    clock.advance(2 * MINUTE);
    restarted.verify::<Value>(&idp.mint()).await.unwrap();
    eventually("the refresh", || restarted.stats().fetch_successes == 1).await;
    assert!(matches!(
        restarted.health(),
        jwkstash_jwks::KeyHealth::Fresh { .. }
    ));
    // The new set replaced the snapshot: a third life, the provider down again, is fresh.
    idp.set_behaviour(Behaviour::Status(503));
    let third = verifier(&idp, &clock, dir.path());
    third.verify::<Value>(&idp.mint()).await.unwrap();
    assert_eq!(third.stats().stale_served, 0);
}

#[tokio::test]
async fn a_snapshot_past_max_stale_is_refused_and_the_verifier_fails_closed() {
    let clock = ManualClock::default();
    let (idp, dir) = (idp(&clock).await, tempfile::tempdir().unwrap());
    let tier = |clock: &ManualClock| {
        FileCache::builder(dir.path())
            .hmac_secret(SECRET)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    };
    let first = idp
        .verifier_builder()
        .clock(Arc::new(clock.clone()))
        .snapshot_tier(Arc::new(tier(&clock)))
        .build()
        .unwrap();
    first.verify::<Value>(&idp.mint()).await.unwrap();
    drop(first);
    idp.set_behaviour(Behaviour::Status(503));
    clock.advance(10 * MINUTE + 60 * MINUTE);
    let snapshots = tier(&clock);
    let restarted = idp
        .verifier_builder()
        .clock(Arc::new(clock.clone()))
        .snapshot_tier(Arc::new(snapshots.clone()))
        .build()
        .unwrap();
    let outcome = restarted.verify::<Value>(&idp.mint()).await;
    assert!(
        matches!(outcome, Err(VerifyError::KeysUnavailable(_))),
        "{outcome:?}"
    );
    assert_eq!(snapshots.refusals()["expired"], 1);
    assert_eq!(restarted.stats().snapshot_hits, 0);
}

#[tokio::test]
async fn a_snapshot_is_held_to_the_readers_max_stale() {
    let clock = ManualClock::default();
    let (idp, dir) = (idp(&clock).await, tempfile::tempdir().unwrap());
    // Written by a verifier that keeps sets a day past their freshness.
    let lenient = idp
        .verifier_builder()
        .clock(Arc::new(clock.clone()))
        .policy(jwkstash_jwks::FreshnessPolicy::default().max_stale(24 * 60 * MINUTE))
        .snapshot_dir(dir.path())
        .build()
        .unwrap();
    lenient.verify::<Value>(&idp.mint()).await.unwrap();
    drop(lenient);
    idp.set_behaviour(Behaviour::Status(503));
    clock.advance(3 * 60 * MINUTE);
    // Read by one that allows an hour: three hours on, the set is not used.
    let strict = verifier(&idp, &clock, dir.path());
    let outcome = strict.verify::<Value>(&idp.mint()).await;
    assert!(
        matches!(outcome, Err(VerifyError::KeysUnavailable(_))),
        "{outcome:?}"
    );
    assert_eq!(strict.stats().snapshot_hits, 0);
}

#[tokio::test]
async fn another_issuers_snapshot_copied_in_place_is_refused() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (idp(&clock).await, idp(&clock).await);
    first_life(&ours, &clock, dir.path()).await;
    let our_file = snapshot_files(dir.path());
    let their_dir = tempfile::tempdir().unwrap();
    first_life(&theirs, &clock, their_dir.path()).await;
    let their_file = snapshot_files(their_dir.path());
    std::fs::copy(&their_file[0], &our_file[0]).unwrap();
    ours.set_behaviour(Behaviour::Status(503));
    let restarted = verifier(&ours, &clock, dir.path());
    // Neither their token nor ours: the snapshot is not ours, and the provider is down.
    for token in [theirs.mint(), ours.mint()] {
        let outcome = restarted.verify::<Value>(&token).await;
        assert!(
            matches!(outcome, Err(VerifyError::KeysUnavailable(_))),
            "{outcome:?}"
        );
    }
    assert_eq!(restarted.stats().snapshot_hits, 0);
}

fn snapshot_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jwks"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files
}

#[test]
fn a_missing_snapshot_directory_is_a_build_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = Verifier::builder()
        .jwks_url("https://idp.example/jwks.json")
        .issuer("https://idp.example/")
        .audience("api")
        .snapshot_dir(dir.path().join("missing"))
        .build()
        .unwrap_err();
    assert!(
        matches!(error, jwkstash_jwks::BuildError::Snapshot(_)),
        "{error}"
    );
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("does not exist"), "{source}");
}

#[tokio::test]
async fn with_discovery_a_restart_during_an_outage_needs_neither_document_nor_keys() {
    let clock = ManualClock::default();
    let (idp, dir) = (idp(&clock).await, tempfile::tempdir().unwrap());
    let discovering = || {
        Verifier::builder()
            .discover(idp.issuer())
            .allow_http_loopback()
            .audience(idp.audience())
            .clock(Arc::new(clock.clone()))
            .snapshot_dir(dir.path())
            .build()
            .unwrap()
    };
    discovering().verify::<Value>(&idp.mint()).await.unwrap();
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
    idp.set_behaviour(Behaviour::Status(503));
    clock.advance(MINUTE);
    let restarted = discovering();
    restarted.verify::<Value>(&idp.mint()).await.unwrap();
    assert_eq!(restarted.stats().snapshot_hits, 1);
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
}
