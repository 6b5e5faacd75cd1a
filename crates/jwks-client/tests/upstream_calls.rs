//! How often the upstream is called: counted with mockall, on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use jwkstash_core::TokioClock;
use jwkstash_jwks::testkit::eventually;
use jwkstash_jwks::{FreshnessPolicy, InvalidToken, Verifier, VerifyError};
use serde_json::Value;
use tokio::time::{Instant, advance};

const MINUTE: Duration = Duration::from_secs(60);

fn verifier(source: impl jwkstash_core::KeySource + 'static, clock: &TokioClock) -> Verifier {
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

/// A verifier over a scripted, counted source whose fetches take `delay`.
struct Fixture {
    clock: TokioClock,
    calls: Arc<AtomicUsize>,
    verifier: Verifier,
}

impl Fixture {
    /// `expected` fetches over the test: mockall checks the total by itself.
    fn new(
        answers: Vec<Result<jwkstash_core::Fetched, ()>>,
        delay: Duration,
        expected: impl Into<mockall::TimesRange>,
    ) -> Self {
        let clock = TokioClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let source = Slow {
            inner: scripted_source_expecting(answers, Arc::clone(&calls), expected),
            delay,
        };
        let verifier = verifier(source, &clock);
        Self {
            clock,
            calls,
            verifier,
        }
    }
}

/// The test of the blog post this project grew from: four lookups, one upstream call.
#[tokio::test(start_paused = true)]
async fn four_sequential_verifications_fetch_once() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    let verifier = verifier(once_source(&[&key]), &clock);
    for _ in 0..4 {
        let claims: Value = verifier.verify(&token(&key, &clock)).await.unwrap();
        assert_eq!(claims["sub"], "user-1");
    }
    assert_eq!(verifier.stats().fetches, 1);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_cold_verifications_fetch_once_and_once_more_after_expiry() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(vec![Ok(modified(&[&key]))], Duration::from_millis(200), 2);
    let token = token(&key, &clock);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify::<Value>(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Past the 10-minute TTL: the stale set serves at once and one refresh runs behind it.
    advance(11 * MINUTE).await;
    for _ in 0..10 {
        verifier.verify::<Value>(&token).await.unwrap();
    }
    eventually("the set was refreshed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_runs_in_the_background_and_hits_never_wait() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(vec![Ok(modified(&[&key]))], Duration::from_secs(2), 2);
    let token = token(&key, &clock);
    verifier.verify::<Value>(&token).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Inside the refresh-ahead window (last minute of the TTL): no caller waits.
    advance(9 * MINUTE + Duration::from_secs(30)).await;
    let started = Instant::now();
    for _ in 0..100 {
        verifier.verify::<Value>(&token).await.unwrap();
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a hit waited on the network"
    );
    // The one background refresh lands (2 s on the paused clock).
    eventually("the refresh landed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The set is fresh again: past the old expiry nothing waits.
    advance(MINUTE).await;
    let started = Instant::now();
    verifier.verify::<Value>(&token).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_flood_fetches_at_most_once_per_cooldown_and_valid_tokens_never_wait() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(vec![Ok(modified(&[&key]))], Duration::from_millis(500), 3);
    let valid = token(&key, &clock);
    verifier.verify::<Value>(&valid).await.unwrap();
    advance(Duration::from_secs(2)).await;

    let flood: Vec<_> = (0..1000)
        .map(|_| {
            let (verifier, forged) = (verifier.clone(), token_with_random_kid(&key, &clock));
            tokio::spawn(async move { verifier.verify::<Value>(&forged).await })
        })
        .collect();
    tokio::task::yield_now().await;
    // While the one refetch is in flight, valid tokens verify without waiting.
    let started = Instant::now();
    for _ in 0..50 {
        verifier.verify::<Value>(&valid).await.unwrap();
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a valid token waited for the refetch"
    );
    for task in flood {
        let error = task.await.unwrap().unwrap_err();
        assert!(
            matches!(error, VerifyError::InvalidToken(InvalidToken::UnknownKid)),
            "{error:?}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one warm-up fetch and at most one refetch"
    );

    // Within the cooldown (30 s) more random kids cause no fetch at all.
    advance(Duration::from_secs(10)).await;
    for _ in 0..100 {
        let forged = token_with_random_kid(&key, &clock);
        assert!(verifier.verify::<Value>(&forged).await.is_err());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // After the cooldown, one more is allowed.
    advance(Duration::from_secs(30)).await;
    let forged = token_with_random_kid(&key, &clock);
    assert!(verifier.verify::<Value>(&forged).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = verifier.stats();
    assert!(stats.unknown_kid_suppressed >= 100, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn a_kid_found_absent_is_not_refetched_again_while_the_set_is_unchanged() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(vec![Ok(modified(&[&key]))], Duration::ZERO, 2);
    let retired = key_with_kid_token(&key, "retired", &clock);
    assert!(verifier.verify::<Value>(&retired).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Past the cooldown the same absent kid still causes no refetch (negative cache).
    advance(2 * MINUTE).await;
    assert!(verifier.verify::<Value>(&retired).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn key_with_kid_token(
    key: &jwkstash_jwks::testkit::TestKey,
    kid: &str,
    clock: &TokioClock,
) -> String {
    let header = serde_json::json!({ "alg": key.alg(), "kid": kid });
    key.sign_with_header(&header, &claims(clock))
}

#[tokio::test(start_paused = true)]
async fn rotation_validates_the_new_kid_after_exactly_one_refetch() {
    let old = rsa_key("old");
    let new = TestKey::ec_p256("new");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(
        vec![Ok(modified(&[&old])), Ok(modified(&[&new]))],
        Duration::ZERO,
        2,
    );
    verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    for _ in 0..10 {
        verifier
            .verify::<Value>(&token(&new, &clock))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The old key was replaced, not merged: its tokens no longer verify.
    let error = verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap_err();
    assert!(
        matches!(error, VerifyError::InvalidToken(InvalidToken::UnknownKid)),
        "{error:?}"
    );
}

use jwkstash_jwks::testkit::TestKey;

#[tokio::test(start_paused = true)]
async fn a_key_removed_upstream_stops_validating_after_the_next_refresh() {
    let (a, b) = (rsa_key("a"), TestKey::ed25519("b"));
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(
        vec![Ok(modified(&[&a, &b])), Ok(modified(&[&b]))],
        Duration::ZERO,
        3,
    );
    verifier.verify::<Value>(&token(&a, &clock)).await.unwrap();
    advance(11 * MINUTE).await;
    // Served from the stale set while the refresh runs; once it lands, `a` is gone.
    verifier.verify::<Value>(&token(&b, &clock)).await.unwrap();
    eventually("the set was refreshed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // `a`'s kid is now unknown: one refetch (the third and last fetch) confirms it is gone.
    let error = verifier
        .verify::<Value>(&token(&a, &clock))
        .await
        .unwrap_err();
    assert!(error.is_invalid_token(), "{error:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_outage_serves_the_last_good_set_up_to_max_stale_then_fails_closed() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(
        vec![Ok(modified(&[&key])), Err(())],
        Duration::ZERO,
        31..=61,
    );
    let token = token(&key, &clock);
    verifier.verify::<Value>(&token).await.unwrap();

    // TTL 10 min, max_stale 1 h: for the next hour the provider is down, tokens still verify.
    advance(10 * MINUTE).await;
    for _ in 0..60 {
        advance(MINUTE - Duration::from_secs(1)).await;
        verifier.verify::<Value>(&token).await.unwrap();
        // Let the refresh this request started run to its end now, at this request's time
        // (yielding runs the spawned load without moving the paused clock).
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
    let during_outage = calls.load(Ordering::SeqCst) - 1;
    // One request every 59 s, each starting at most one refresh unless the source backs off;
    // the backoff (1 s doubling, jittered, capped at 60 s) never skips two requests in a row:
    // between 30 and 60 fetches in the hour.
    assert!(
        (30..=60).contains(&during_outage),
        "{during_outage} fetches in an hour of outage"
    );
    assert!(verifier.stats().stale_served >= 58);

    // Past max_stale: fail closed with "keys unavailable" (503), never "invalid token".
    advance(2 * MINUTE).await;
    let error = verifier.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(error, VerifyError::KeysUnavailable(_)),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 503);
}

#[tokio::test(start_paused = true)]
async fn a_failing_cold_start_backs_off_instead_of_hammering() {
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(vec![Err(())], Duration::ZERO, 2);
    let key = rsa_key("k1");
    let token = token(&key, &clock);
    for _ in 0..100 {
        let error = verifier.verify::<Value>(&token).await.unwrap_err();
        let VerifyError::KeysUnavailable(unavailable) = &error else {
            panic!("{error:?}");
        };
        assert!(unavailable.retry_after().is_some());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    advance(Duration::from_secs(2)).await;
    assert!(verifier.verify::<Value>(&token).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn max_age_sets_the_ttl_within_bounds() {
    let key = rsa_key("k1");
    let clock = TokioClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let answer = jwkstash_core::Fetched::Modified {
        body: jwkstash_jwks::testkit::jwks(&[&key]).to_string().into(),
        etag: None,
        max_age: Some(Duration::from_secs(5)),
    };
    let source = scripted_source_expecting(vec![Ok(answer)], Arc::clone(&calls), 2);
    let verifier = builder(source, Arc::new(clock.clone()))
        .policy(FreshnessPolicy::default().min_ttl(MINUTE))
        .build()
        .unwrap();
    let token = token(&key, &clock);
    verifier.verify::<Value>(&token).await.unwrap();
    // max-age 5 s is clamped up to the 1-minute minimum.
    advance(Duration::from_secs(20)).await;
    verifier.verify::<Value>(&token).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    advance(MINUTE).await;
    verifier.verify::<Value>(&token).await.unwrap();
    eventually("the set was refreshed", || {
        calls.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_a_new_kid_all_verify_after_one_refetch() {
    let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(
        vec![Ok(modified(&[&old])), Ok(modified(&[&new]))],
        Duration::from_millis(20),
        2,
    );
    verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap();
    let token = token(&new, &clock);
    // Callers that arrive while the refetch runs join it; those that arrive after it landed
    // (cooldown active) retry with the newer set instead of being refused.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i % 40)).await;
                verifier.verify::<Value>(&token).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A cache whose reads return what they found only after a delay, to interleave callers: the
/// n-th read waits `delay_ms + n % spread_ms` milliseconds.
#[derive(Debug)]
struct SlowReads {
    inner: jwkstash_memory::MemoryCache<Arc<jwkstash_jwks::KeySet>>,
    delay_ms: std::sync::atomic::AtomicU64,
    spread_ms: u64,
    reads: std::sync::atomic::AtomicU64,
}

impl SlowReads {
    fn new(clock: &TokioClock, delay_ms: u64, spread_ms: u64) -> Self {
        Self {
            inner: jwkstash_memory::MemoryCache::builder()
                .clock(Arc::new(clock.clone()))
                .build(),
            delay_ms: std::sync::atomic::AtomicU64::new(delay_ms),
            spread_ms: spread_ms.max(1),
            reads: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl jwkstash_core::Cache<Arc<jwkstash_jwks::KeySet>> for SlowReads {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<jwkstash_core::Entry<Arc<jwkstash_jwks::KeySet>>>, jwkstash_core::CacheError>
    {
        let found = self.inner.get(key).await;
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst) + n % self.spread_ms;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        found
    }
    async fn put(
        &self,
        key: &str,
        entry: jwkstash_core::Entry<Arc<jwkstash_jwks::KeySet>>,
    ) -> Result<(), jwkstash_core::CacheError> {
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &str) -> Result<(), jwkstash_core::CacheError> {
        self.inner.remove(key).await
    }
    fn name(&self) -> &'static str {
        "slow-reads"
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_read_the_old_set_before_a_refetch_landed_retries_with_the_new_one() {
    let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
    let clock = TokioClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let source = Slow {
        inner: scripted_source_expecting(
            vec![Ok(modified(&[&old])), Ok(modified(&[&new]))],
            Arc::clone(&calls),
            2,
        ),
        delay: Duration::from_millis(500),
    };
    let cache = Arc::new(SlowReads::new(&clock, 0, 1));
    let verifier = builder(source, Arc::new(clock.clone()))
        .near_tier(cache.clone())
        .build()
        .unwrap();
    verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap();
    let token = token(&new, &clock);
    // A finds the new kid unknown and starts the refetch (lands at t = 0.5 s).
    let first = tokio::spawn({
        let (verifier, token) = (verifier.clone(), token.clone());
        async move { verifier.verify::<Value>(&token).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // B reads the old set at t = 0.1 s but looks the kid up only at t = 1.6 s: the refetch is
    // over and the cooldown is running.
    cache.delay_ms.store(1500, Ordering::SeqCst);
    let second = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.verify::<Value>(&token).await }
    });
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The race of a cold stampede: callers that read the empty cache just before the first load
/// ended must not start a second fetch. Reads of the cache are staggered over 0–4 ms of paused
/// time, so in every round many callers are between their read and their join when the load
/// lands. `.times(1)` fails the round by itself on a second fetch.
#[tokio::test(start_paused = true)]
async fn every_cold_stampede_fetches_exactly_once() {
    let key = TestKey::ed25519("k1");
    let clock = TokioClock::new();
    let token = token(&key, &clock);
    for round in 0..200 {
        let cache = Arc::new(SlowReads::new(&clock, 0, 5));
        let verifier = builder(once_source(&[&key]), Arc::new(clock.clone()))
            .near_tier(cache)
            .build()
            .unwrap();
        // One caller in ten verifies a token; the others ask for the key set, the step of a
        // verification that loads (signature checks would only slow the 200 rounds down).
        let callers: Vec<_> = (0..1000)
            .map(|i| {
                let (verifier, token) = (verifier.clone(), token.clone());
                tokio::spawn(async move {
                    if i % 10 == 0 {
                        verifier.verify::<Value>(&token).await.map(drop)
                    } else {
                        verifier
                            .key_set()
                            .await
                            .map(drop)
                            .map_err(VerifyError::from)
                    }
                })
            })
            .collect();
        for caller in callers {
            if let Err(error) = caller.await.unwrap() {
                panic!("round {round}: {error:?}");
            }
        }
        assert_eq!(verifier.stats().fetches, 1, "round {round}");
    }
}

/// A token with an unknown kid waits for the refetch no longer than `unknown_kid_wait`; the
/// refetch goes on and serves the tokens that come after, without another fetch.
#[tokio::test(start_paused = true)]
async fn an_unknown_kid_waits_at_most_the_bounded_wait_and_the_refetch_goes_on() {
    let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
    let clock = TokioClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let source = Slow {
        inner: scripted_source_expecting(
            vec![Ok(modified(&[&old])), Ok(modified(&[&old, &new]))],
            Arc::clone(&calls),
            2,
        ),
        delay: Duration::from_secs(10),
    };
    let wait = Duration::from_millis(1500);
    let verifier = builder(source, Arc::new(clock.clone()))
        .policy(FreshnessPolicy::default().unknown_kid_wait(wait))
        .build()
        .unwrap();
    verifier.prefetch().await.unwrap();
    let started = Instant::now();
    let error = verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap_err();
    assert_eq!(
        started.elapsed(),
        wait,
        "the caller did not wait exactly the bounded wait"
    );
    // 503, not 401: the provider has not answered yet.
    let VerifyError::KeysUnavailable(unavailable) = &error else {
        panic!("{error:?}");
    };
    assert!(matches!(
        unavailable.cause(),
        jwkstash_jwks::RefreshError::Pending { .. }
    ));
    assert!(unavailable.retry_after().is_some());
    assert_eq!(error.http_status(), 503);
    assert_eq!(verifier.stats().unknown_kid_timeouts, 1);
    // The refetch went on: when it lands, the new kid verifies with no further fetch.
    eventually("the refetch landed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
