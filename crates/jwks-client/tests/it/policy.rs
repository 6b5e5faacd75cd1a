//! The freshness policy's arithmetic and the settings `build()` refuses, at their boundaries;
//! and what a parsed key set gives back (its bytes, its keys' kid and algorithm).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{CacheValue, TokioClock};
use jwkstash_jwks::testkit::{TestKey, jwks};
use jwkstash_jwks::{Algorithm, BuildError, FreshnessPolicy, KeySet};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

fn builds(policy: FreshnessPolicy) -> Result<(), String> {
    builder(silent_source(), Arc::new(TokioClock::new()))
        .policy(policy)
        .build()
        .map(drop)
        .map_err(|error| match error {
            BuildError::InvalidSetting(why) => why,
            other => panic!("{other:?}"),
        })
}

#[tokio::test]
async fn build_refuses_an_inconsistent_policy() {
    let base = FreshnessPolicy::default;
    let refused = [
        (base().min_ttl(Duration::ZERO), "min_ttl must be positive"),
        (
            base().min_ttl(2 * MINUTE).max_ttl(MINUTE).ttl(MINUTE),
            "ttl must lie",
        ),
        (base().ttl(30 * SECOND), "ttl must lie"),
        (base().ttl(25 * 60 * MINUTE), "ttl must lie"),
        (
            base().unknown_kid_cooldown(Duration::ZERO),
            "unknown_kid_cooldown",
        ),
        (
            base().min_refresh_interval(Duration::ZERO),
            "min_refresh_interval",
        ),
        (base().backoff_initial(Duration::ZERO), "backoff_initial"),
        (
            base().backoff_initial(2 * MINUTE).backoff_max(MINUTE),
            "backoff_initial",
        ),
    ];
    for (policy, expected) in refused {
        let why = builds(policy.clone()).unwrap_err();
        assert!(why.contains(expected), "{policy:?}: {why}");
    }
    // The boundaries themselves are consistent.
    let edges = [
        base().min_ttl(MINUTE).max_ttl(MINUTE).ttl(MINUTE),
        base().ttl(MINUTE),
        base().ttl(24 * 60 * MINUTE),
        base().backoff_initial(MINUTE).backoff_max(MINUTE),
    ];
    for policy in edges {
        assert_eq!(builds(policy.clone()), Ok(()), "{policy:?}");
    }
}

#[test]
fn refresh_ahead_is_capped_at_half_the_ttl() {
    let policy = FreshnessPolicy::default().refresh_ahead(20 * MINUTE);
    assert_eq!(policy.refresh_ahead_for(10 * MINUTE), 5 * MINUTE);
    assert_eq!(policy.refresh_ahead_for(60 * MINUTE), 20 * MINUTE);
    let default = FreshnessPolicy::default();
    assert_eq!(default.refresh_ahead_for(10 * MINUTE), MINUTE);
    assert_eq!(default.refresh_ahead_for(MINUTE), 30 * SECOND);
}

#[test]
fn max_age_is_clamped_and_backoff_doubles_to_its_cap() {
    let policy = FreshnessPolicy::default();
    assert_eq!(policy.ttl_for(None), 10 * MINUTE);
    assert_eq!(policy.ttl_for(Some(5 * SECOND)), MINUTE);
    assert_eq!(policy.ttl_for(Some(2 * MINUTE)), 2 * MINUTE);
    assert_eq!(policy.ttl_for(Some(48 * 60 * MINUTE)), 24 * 60 * MINUTE);
    let backoffs: Vec<u64> = (1..=8).map(|n| policy.backoff(n).as_secs()).collect();
    assert_eq!(backoffs, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(policy.backoff(u32::MAX), MINUTE);
}

#[test]
fn a_key_set_gives_back_its_document_and_its_keys() {
    let (rsa, ec) = (TestKey::rsa("r1"), TestKey::ec_p256("e1"));
    let mut unpinned = ec.public_jwk();
    unpinned.as_object_mut().unwrap().remove("alg");
    let document = serde_json::json!({ "keys": [rsa.public_jwk(), unpinned] }).to_string();
    let set = KeySet::parse(document.clone()).unwrap();
    assert_eq!(set.to_bytes(), document.as_bytes());
    let again = KeySet::from_bytes(&set.to_bytes()).unwrap();
    assert_eq!(again.fingerprint(), set.fingerprint());
    let keys: Vec<(Option<&str>, Option<Algorithm>)> = set
        .keys()
        .iter()
        .map(|key| (key.kid(), key.algorithm()))
        .collect();
    assert_eq!(
        keys,
        [(Some("r1"), Some(Algorithm::RS256)), (Some("e1"), None)]
    );
    // A set of one key is not the set of two: to_bytes is the document itself.
    assert_ne!(
        KeySet::parse(jwks(&[&rsa]).to_string()).unwrap().to_bytes(),
        set.to_bytes()
    );
}
