//! Metrics (through the `metrics` facade, checked with a debugging recorder), tracing spans
//! (checked by capturing a subscriber's output) and the `stats()` snapshot.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::common::*;
use jwkstash_core::{Clock, ManualClock};
use jwkstash_jwks::Verifier;
use jwkstash_jwks::testkit::TestKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::{Value, json};

fn verifier(key: &TestKey, clock: &ManualClock) -> Verifier {
    let source = scripted_source(vec![Ok(modified(&[key]))], Arc::default());
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

/// A metric as recorded: name, labels, value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

/// The value of the metric `name` with the label `label` (or none), summed over issuers.
fn metric(snapshot: &[Recorded], name: &str, label: Option<(&str, &str)>) -> f64 {
    snapshot
        .iter()
        .filter(|(metric, labels, _)| {
            metric == name
                && label
                    .is_none_or(|(key, value)| labels.iter().any(|(k, v)| k == key && v == value))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Counter(count) => *count as f64,
            DebugValue::Gauge(gauge) => gauge.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_outcomes_tiers_fetches_and_the_key_set() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    // Handles are registered when the verifier is built: build it under the recorder.
    let verifier = metrics::with_local_recorder(&recorder, || verifier(&key, &clock));
    for _ in 0..3 {
        verifier
            .verify::<Value>(&token(&key, &clock))
            .await
            .unwrap();
    }
    let mut expired = claims(&clock);
    expired["exp"] = json!(1);
    assert!(verifier.verify::<Value>(&key.sign(&expired)).await.is_err());
    assert!(
        verifier
            .verify::<Value>(&token_with_random_kid(&key, &clock))
            .await
            .is_err()
    );

    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.key().name().to_owned(), labels, value)
        })
        .collect();
    assert_eq!(
        metric(
            &snapshot,
            "jwkstash_verifications_total",
            Some(("outcome", "verified"))
        ),
        3.0
    );
    assert_eq!(
        metric(
            &snapshot,
            "jwkstash_verifications_total",
            Some(("outcome", "invalid"))
        ),
        2.0
    );
    assert_eq!(
        metric(
            &snapshot,
            "jwkstash_verifications_total",
            Some(("issuer", ISSUER))
        ),
        5.0
    );
    assert!(
        metric(
            &snapshot,
            "jwkstash_cache_hits_total",
            Some(("tier", "pinned"))
        ) >= 3.0
    );
    assert_eq!(
        metric(
            &snapshot,
            "jwkstash_fetches_total",
            Some(("result", "started"))
        ),
        2.0
    );
    assert_eq!(
        metric(&snapshot, "jwkstash_unknown_kid_refetches_total", None),
        1.0
    );
    assert_eq!(
        metric(&snapshot, "jwkstash_fetch_duration_seconds", None),
        2.0
    );
    let fetched_at = metric(&snapshot, "jwkstash_key_set_fetched_at_seconds", None);
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((fetched_at - now).abs() < 1.0, "{fetched_at} vs {now}");
}

#[tokio::test]
async fn stats_snapshot_the_same_counts() {
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier(&key, &clock);
    for _ in 0..4 {
        verifier
            .verify::<Value>(&token(&key, &clock))
            .await
            .unwrap();
    }
    assert!(verifier.verify::<Value>("x.y.z").await.is_err());
    let stats = verifier.stats();
    assert_eq!(
        (
            stats.verified,
            stats.rejected,
            stats.fetches,
            stats.signature_checks
        ),
        (4, 1, 1, 4)
    );
    assert_eq!(stats.pinned_hits, 3);
    assert_eq!(stats.cache_misses, 1);
    assert!(stats.hit_ratio() > 0.75);
}
