//! The metrics' label cardinality stays bounded with many issuers: verifiers that an `Issuers`
//! resolver builds share one `issuer` label value (`resolved`, or the registry's own) unless
//! the application opts in to one per issuer. Checked with a debugging recorder installed
//! globally (a resolver's verifiers are built on the registry's own task).
#![allow(clippy::unwrap_used)]

#[path = "it/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use jwkstash_core::{ManualClock, MockKeySource};
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{Issuers, VerifierBuilder};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Value, json};

/// One series as recorded: name, labels, value.
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: DebugValue,
}

impl Series {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<Series> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| Series {
            name: key.key().name().to_owned(),
            labels: key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect(),
            value,
        })
        .collect()
}

/// A registry whose resolver accepts every issuer, each with its own source serving `key`.
fn resolving(key: &TestKey, clock: &ManualClock) -> Issuers {
    let (answer, clock) = (modified(&[key]), clock.clone());
    Issuers::new().resolver(move |issuer: &str, builder: VerifierBuilder| {
        let mut source = MockKeySource::new();
        source.expect_id().return_const(format!("{issuer}jwks"));
        let answer = answer.clone();
        source.expect_fetch().returning(move |_| Ok(answer.clone()));
        Some(
            builder
                .key_source(source)
                .audience(AUDIENCE)
                .clock(Arc::new(clock.clone())),
        )
    })
}

/// Verifies one token of each of `count` issuers `https://{prefix}-{n}.example/`.
async fn verify_one_token_each(issuers: &Issuers, prefix: &str, count: usize, key: &TestKey) {
    let clock = ManualClock::default();
    for n in 0..count {
        let mut claims = claims(&clock);
        claims["iss"] = json!(format!("https://{prefix}-{n}.example/"));
        issuers.verify::<Value>(&key.sign(&claims)).await.unwrap();
    }
}

/// The verified count of the series labelled `issuer`.
fn verified(series: &[Series], issuer: &str) -> u64 {
    series
        .iter()
        .filter(|s| s.name == "jwkstash_verifications_total")
        .filter(|s| s.label("issuer") == Some(issuer) && s.label("outcome") == Some("verified"))
        .map(|s| match s.value {
            DebugValue::Counter(count) => count,
            _ => 0,
        })
        .sum()
}

/// Series whose `issuer` label starts with `https://{prefix}-`.
fn per_issuer(series: &[Series], prefix: &str) -> usize {
    let prefix = format!("https://{prefix}-");
    series
        .iter()
        .filter(|s| s.label("issuer").is_some_and(|i| i.starts_with(&prefix)))
        .count()
}

/// One test: the recorder is global, and a snapshot resets the counters it reads.
#[tokio::test]
async fn resolved_issuers_share_a_bounded_set_of_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    let key = TestKey::ed25519("k1");
    let clock = ManualClock::default();

    // By default: 200 resolved issuers, one label value, the series of one verifier.
    let issuers = resolving(&key, &clock);
    verify_one_token_each(&issuers, "default", 200, &key).await;
    let series = snapshot(&snapshotter);
    let shared: Vec<&Series> = series
        .iter()
        .filter(|s| s.label("issuer") == Some("resolved"))
        .collect();
    let names: BTreeSet<&str> = shared.iter().map(|s| s.name.as_str()).collect();
    eprintln!(
        "200 resolved issuers: {} series in all, {} labelled issuer=\"resolved\", {} per issuer",
        series.len(),
        shared.len(),
        per_issuer(&series, "default")
    );
    assert_eq!(per_issuer(&series, "default"), 0);
    // 25 counters and the fetch histogram; no gauges.
    assert_eq!(shared.len(), 26, "{} series", shared.len());
    assert!(names.contains("jwkstash_verifications_total"));
    assert!(!names.contains("jwkstash_key_set_age_seconds"));
    assert_eq!(verified(&series, "resolved"), 200);
    // Each resolved verifier still counts for itself.
    let one = issuers.get("https://default-7.example/").unwrap();
    assert_eq!(one.stats().verified, 1);

    // The registry's own label value.
    let issuers = resolving(&key, &clock).metrics_label("tenants");
    verify_one_token_each(&issuers, "named", 50, &key).await;
    let series = snapshot(&snapshotter);
    let named = series
        .iter()
        .filter(|s| s.label("issuer") == Some("tenants"))
        .count();
    assert_eq!(per_issuer(&series, "named"), 0);
    assert_eq!(named, 26, "{named} series");
    assert_eq!(verified(&series, "tenants"), 50);

    // Opted in: one label value per resolved issuer, the gauges included.
    let issuers = resolving(&key, &clock).metrics_per_issuer();
    verify_one_token_each(&issuers, "own", 3, &key).await;
    let series = snapshot(&snapshotter);
    let own: BTreeSet<&str> = series
        .iter()
        .filter_map(|s| s.label("issuer"))
        .filter(|issuer| issuer.starts_with("https://own-"))
        .collect();
    assert_eq!(own.len(), 3);
    // 28 series each, as a configured verifier has: the two key-set gauges too.
    let of_one = series
        .iter()
        .filter(|s| s.label("issuer") == Some("https://own-0.example/"))
        .count();
    assert_eq!(of_one, 28);
    assert_eq!(verified(&series, "https://own-2.example/"), 1);
    assert!(series.iter().any(|s| {
        s.name == "jwkstash_key_set_age_seconds"
            && s.label("issuer") == Some("https://own-0.example/")
    }));
}
