//! Key events: what a subscriber hears, once each, and that a subscriber never slows a
//! verification. On tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::TokioClock;
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{EVENT_CAPACITY, KeyEvent, KeyEvents, RefreshError, Verifier};
use serde_json::Value;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::{Instant, advance};

const MINUTE: Duration = Duration::from_secs(60);

fn verifier(answers: Vec<Result<jwkstash_core::Fetched, ()>>, clock: &TokioClock) -> Verifier {
    builder(
        scripted_source(answers, Arc::default()),
        Arc::new(clock.clone()),
    )
    .build()
    .unwrap()
}

/// Every event queued now, in order.
fn drain(events: &mut Receiver<KeyEvent>) -> Vec<KeyEvent> {
    let mut seen = Vec::new();
    loop {
        match events.try_recv() {
            Ok(event) => seen.push(event),
            Err(TryRecvError::Empty) => return seen,
            Err(error) => panic!("{error:?}"),
        }
    }
}

fn changed(event: &KeyEvent) -> (Vec<String>, Vec<String>) {
    match event {
        KeyEvent::KeySetChanged { added, removed, .. } => (added.clone(), removed.clone()),
        other => panic!("not a change: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotation_is_one_change_event_with_the_kids_added_and_removed() {
    let (k1, k2, k3) = (
        rsa_key("k1"),
        TestKey::ec_p256("k2"),
        TestKey::ed25519("k3"),
    );
    let clock = TokioClock::new();
    let verifier = verifier(
        vec![Ok(modified(&[&k1, &k2])), Ok(modified(&[&k2, &k3]))],
        &clock,
    );
    let mut events = verifier.subscribe();
    verifier.prefetch().await.unwrap();
    let first = drain(&mut events);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(changed(&first[0]), (vec!["k1".into(), "k2".into()], vec![]));

    // A token of the new key: one refetch, one change event, whatever the traffic.
    for _ in 0..10 {
        verifier.verify::<Value>(&token(&k3, &clock)).await.unwrap();
    }
    let second = drain(&mut events);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(changed(&second[0]), (vec!["k3".into()], vec!["k1".into()]));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_refresh_sends_nothing_and_a_failure_says_when_the_next_try_is() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    let verifier = verifier(
        vec![Ok(modified(&[&key])), Ok(modified(&[&key])), Err(())],
        &clock,
    );
    verifier.prefetch().await.unwrap();
    let mut events = verifier.subscribe();
    let valid = token(&key, &clock);

    // Inside the refresh-ahead window: the same set comes back, no event.
    advance(9 * MINUTE + Duration::from_secs(30)).await;
    verifier.verify::<Value>(&valid).await.unwrap();
    jwkstash_jwks::testkit::eventually("the refresh ran", || verifier.stats().fetches == 2).await;
    assert!(drain(&mut events).is_empty());

    // Past the new TTL the refresh fails: one RefreshFailed and one StaleServed, though 100
    // verifications are served stale.
    advance(10 * MINUTE).await;
    for _ in 0..100 {
        verifier.verify::<Value>(&valid).await.unwrap();
    }
    jwkstash_jwks::testkit::eventually("the refresh failed", || {
        verifier.stats().fetch_failures == 1
    })
    .await;
    let seen = drain(&mut events);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().any(|event| matches!(
            event,
            KeyEvent::StaleServed { since, until } if until > since
        )),
        "{seen:?}"
    );
    let retry_after = seen
        .iter()
        .find_map(|event| match event {
            KeyEvent::RefreshFailed { cause, retry_after } => {
                assert!(matches!(**cause, RefreshError::Fetch(_)), "{cause:?}");
                Some(*retry_after)
            }
            _ => None,
        })
        .expect("a RefreshFailed event");
    // The first backoff step: 1 s, jittered.
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
        "{retry_after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_never_reads_loses_old_events_and_slows_nothing() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    // Every refetch brings a different set, so every unknown-kid refetch is a change.
    let answers = (0..200)
        .map(|i| Ok(modified(&[&key, &TestKey::ed25519(&format!("extra-{i}"))])))
        .collect();
    let verifier = verifier(answers, &clock);
    let mut events = verifier.subscribe();
    verifier.prefetch().await.unwrap();
    let valid = token(&key, &clock);
    for _ in 0..(EVENT_CAPACITY + 36) {
        // One refetch per cooldown, each one a change event.
        advance(Duration::from_secs(31)).await;
        let forged = token_with_random_kid(&key, &clock);
        assert!(verifier.verify::<Value>(&forged).await.is_err());
        let started = Instant::now();
        verifier.verify::<Value>(&valid).await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
    assert_eq!(verifier.stats().fetches, EVENT_CAPACITY as u64 + 37);
    // The channel kept only the newest EVENT_CAPACITY events.
    match events.try_recv() {
        Err(TryRecvError::Lagged(lost)) => assert_eq!(lost, 37),
        other => panic!("{other:?}"),
    }
    assert_eq!(drain(&mut events).len(), EVENT_CAPACITY);
}

/// In a fleet: the instance that takes the lease says so, and says so again when it loses
/// the lease (its renewals fail); an instance that found the set in the shared tier takes no
/// lease.
#[tokio::test(start_paused = true)]
async fn the_fetching_instance_reports_the_lease_taken_and_lost() {
    let clock = TokioClock::new();
    let key = TestKey::ed25519("k1");
    let shared = Arc::new(TestTier::losing_leases(
        jwkstash_memory::MemoryCache::<Arc<jwkstash_jwks::KeySet>>::builder()
            .clock(Arc::new(clock.clone()))
            .build(),
    ));
    let instance = |delay| {
        let source = Slow {
            inner: scripted_source(vec![Ok(modified(&[&key]))], Arc::default()),
            delay,
        };
        builder(source, Arc::new(clock.clone()))
            .shared_tier(Arc::clone(&shared) as jwkstash_jwks::SharedKeySetTier)
            .lease_ttl(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let (first, second) = (
        instance(Duration::from_millis(300)),
        instance(Duration::ZERO),
    );
    let (mut first_events, mut second_events) = (first.subscribe(), second.subscribe());
    first.verify::<Value>(&token(&key, &clock)).await.unwrap();
    let seen = drain(&mut first_events);
    assert!(matches!(seen[0], KeyEvent::LeaseTaken), "{seen:?}");
    assert!(
        matches!(seen[1], KeyEvent::LeaseLost { lease_ttl } if lease_ttl == Duration::from_millis(100)),
        "{seen:?}"
    );
    assert!(
        matches!(seen[2], KeyEvent::KeySetChanged { .. }),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 3, "{seen:?}");

    second.verify::<Value>(&token(&key, &clock)).await.unwrap();
    let seen = drain(&mut second_events);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        matches!(seen[0], KeyEvent::KeySetChanged { .. }),
        "{seen:?}"
    );
    assert_eq!(second.stats().fetches, 0);
}

/// A live holder renews its lease: a fetch that takes three lease TTLs loses nothing, and the
/// other instance waits for it instead of fetching.
#[tokio::test(start_paused = true)]
async fn a_live_holder_keeps_its_lease_through_a_slow_fetch() {
    let clock = TokioClock::new();
    let key = TestKey::ed25519("k1");
    let shared = Arc::new(
        jwkstash_memory::MemoryCache::<Arc<jwkstash_jwks::KeySet>>::builder()
            .clock(Arc::new(clock.clone()))
            .build(),
    );
    let lease_ttl = Duration::from_millis(100);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let instance = || {
        let source = Slow {
            inner: scripted_source_expecting(
                vec![Ok(modified(&[&key]))],
                Arc::clone(&calls),
                0..=1,
            ),
            delay: 3 * lease_ttl,
        };
        builder(source, Arc::new(clock.clone()))
            .shared_tier(Arc::clone(&shared) as jwkstash_jwks::SharedKeySetTier)
            .lease_ttl(lease_ttl)
            .build()
            .unwrap()
    };
    let (first, second) = (instance(), instance());
    let mut first_events = first.subscribe();
    let token = token(&key, &clock);
    let (a, b) = tokio::join!(first.verify::<Value>(&token), async {
        tokio::time::sleep(lease_ttl / 2).await;
        second.verify::<Value>(&token).await
    });
    a.unwrap();
    b.unwrap();
    let seen = drain(&mut first_events);
    assert!(
        !seen
            .iter()
            .any(|event| matches!(event, KeyEvent::LeaseLost { .. })),
        "{seen:?}"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(first.stats().fetches + second.stats().fetches, 1);
}

/// A subscriber that falls behind loses the oldest events, and must go on after that: a bare
/// receiver's next `recv()` is `Err(Lagged)` (the README's `while let Ok(..)` loop used to stop
/// there for good). `KeyEvents` skips the gap, counts it, and ends only with the verifier.
#[tokio::test(start_paused = true)]
async fn key_events_ride_over_a_lag_count_what_was_lost_and_end_with_the_verifier() {
    let key = TestKey::ed25519("k1");
    let clock = TokioClock::new();
    // Every fetch brings a different set: each is a KeySetChanged event.
    let answers = (0..100)
        .map(|i| Ok(modified(&[&key, &TestKey::ed25519(&format!("extra-{i}"))])))
        .collect();
    let verifier = verifier(answers, &clock);
    let mut raw = verifier.subscribe();
    let mut events = KeyEvents::from(verifier.subscribe());
    verifier.prefetch().await.unwrap();
    for _ in 0..(EVENT_CAPACITY + 9) {
        advance(Duration::from_secs(6)).await;
        assert!(verifier.refresh().await.unwrap().fetched);
    }
    // 74 events into a channel of 64: the 10 oldest are lost.
    assert!(matches!(
        raw.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Lagged(10))
    ));
    for _ in 0..EVENT_CAPACITY {
        let event = events.next().await;
        assert!(
            matches!(event, Some(KeyEvent::KeySetChanged { .. })),
            "{event:?}"
        );
    }
    assert_eq!(events.lost(), 10);
    // It goes on hearing new events.
    advance(Duration::from_secs(6)).await;
    assert!(verifier.refresh().await.unwrap().fetched);
    assert!(matches!(
        events.next().await,
        Some(KeyEvent::KeySetChanged { .. })
    ));
    assert_eq!(events.lost(), 10);
    // And ends when the verifier is gone.
    drop((verifier, raw));
    let end = tokio::time::timeout(MINUTE, events.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}
