//! Operator control: `refresh()` forces one coalesced fetch (at most one per
//! `min_refresh_interval`, whatever the freshness or the backoff) and `invalidate()` drops the
//! set. Upstream calls are mockall expectations, on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{MockKeySource, TokioClock};
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{InvalidToken, Verifier, VerifyError};
use mockall::Sequence;
use serde_json::Value;
use tokio::time::{Instant, advance};

/// A source that answers each of `answers` exactly once, in order: one more fetch fails the test.
fn sequence(answers: Vec<Result<jwkstash_core::Fetched, ()>>) -> MockKeySource {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let mut order = Sequence::new();
    for answer in answers {
        source
            .expect_fetch()
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_| {
                answer
                    .clone()
                    .map_err(|()| jwkstash_core::FetchError::Status(500))
            });
    }
    source
}

fn verifier(source: impl jwkstash_core::KeySource + 'static, clock: &TokioClock) -> Verifier {
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_emergency_rotation_takes_effect_at_the_refresh_not_at_the_next_expiry() {
    let (compromised, replacement) = (rsa_key("k1"), TestKey::ec_p256("k2"));
    let clock = TokioClock::new();
    let verifier = verifier(
        sequence(vec![
            Ok(modified(&[&compromised, &replacement])),
            Ok(modified(&[&replacement])),
        ]),
        &clock,
    );
    let stolen = token(&compromised, &clock);
    verifier.verify::<Value>(&stolen).await.unwrap();

    // Two minutes later the theft is found and the provider removes the key; the cached set is
    // fresh for eight more minutes. A set fetched after the token was issued lacks its kid: the
    // token is refused at once, with no refetch.
    tokio::time::advance(2 * Duration::from_secs(60)).await;
    let refreshed = verifier.refresh().await.unwrap();
    assert!(refreshed.fetched);
    assert!(!refreshed.key_set.contains_kid("k1"));
    let outcome = verifier.verify::<Value>(&stolen).await;
    assert!(
        matches!(
            outcome,
            Err(VerifyError::InvalidToken(InvalidToken::UnknownKid))
        ),
        "{outcome:?}"
    );
    verifier
        .verify::<Value>(&token(&replacement, &clock))
        .await
        .unwrap();
    assert_eq!(verifier.stats().fetches_forced, 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_are_coalesced_to_one_per_min_refresh_interval() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    // The warm-up, one forced fetch for 100 concurrent calls, one after the interval.
    let source = Slow {
        inner: sequence(vec![Ok(modified(&[&key])); 3]),
        delay: Duration::from_millis(200),
    };
    let verifier = verifier(source, &clock);
    verifier.prefetch().await.unwrap();

    let calls: Vec<_> = (0..100)
        .map(|_| {
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.refresh().await })
        })
        .collect();
    let mut fetched = 0;
    for call in calls {
        fetched += usize::from(call.await.unwrap().unwrap().fetched);
    }
    assert_eq!(fetched, 1, "one call fetched, the others shared it");

    // Within the interval (5 s): no fetch, at once.
    advance(Duration::from_secs(4)).await;
    let started = Instant::now();
    assert!(!verifier.refresh().await.unwrap().fetched);
    assert_eq!(started.elapsed(), Duration::ZERO);
    // After it: one more.
    advance(Duration::from_secs(2)).await;
    assert!(verifier.refresh().await.unwrap().fetched);
    assert_eq!(verifier.stats().fetches, 3);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_ignores_the_backoff_and_reports_a_failure() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    let verifier = verifier(
        sequence(vec![
            Ok(modified(&[&key])),
            Err(()),
            Err(()),
            Ok(modified(&[&key])),
        ]),
        &clock,
    );
    verifier.prefetch().await.unwrap();
    let error = verifier.refresh().await.unwrap_err();
    assert!(error.retry_after().is_some(), "{error:?}");
    // Backing off now (the first step is 1 s); a refresh past the interval still fetches.
    advance(Duration::from_secs(5)).await;
    assert!(verifier.refresh().await.is_err());
    advance(Duration::from_secs(5)).await;
    assert!(verifier.refresh().await.unwrap().fetched);
    // The set in use all along: valid tokens never failed.
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn invalidate_drops_the_set_and_the_next_verification_loads_it() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    let verifier = verifier(
        sequence(vec![Ok(modified(&[&key])), Ok(modified(&[&key]))]),
        &clock,
    );
    let valid = token(&key, &clock);
    verifier.verify::<Value>(&valid).await.unwrap();
    verifier.invalidate().await.unwrap();
    assert!(!verifier.health().is_ready());
    verifier.verify::<Value>(&valid).await.unwrap();
    let stats = verifier.stats();
    assert_eq!((stats.fetches, stats.waited_for_fetch), (2, 2), "{stats:?}");
}
