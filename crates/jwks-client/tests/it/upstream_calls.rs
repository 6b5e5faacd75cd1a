//! How often the upstream is called: counted with mockall, on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{Clock, TokioClock};
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

/// A kid missing from a set fetched after its token was issued (plus the leeway for the
/// provider's clock) is refused at once, however often it comes: no key published since could
/// have signed that token. A token of the same kid issued after the set may be of a key
/// published since, and asks the provider once.
#[tokio::test(start_paused = true)]
async fn a_kid_absent_from_a_set_fetched_after_its_token_is_refused_without_a_refetch() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(vec![Ok(modified(&[&key]))], Duration::ZERO, 2);
    let retired = key_with_kid_token(&key, "retired", &clock);
    advance(2 * MINUTE).await;
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    for _ in 0..3 {
        let outcome = verifier.verify::<Value>(&retired).await;
        assert!(is_unknown_kid(&outcome), "{outcome:?}");
        advance(2 * MINUTE).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let newer = key_with_kid_token(&key, "retired", &clock);
    let outcome = verifier.verify::<Value>(&newer).await;
    assert!(is_unknown_kid(&outcome), "{outcome:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // That refetch found it absent: the same token is refused at once from now on.
    advance(2 * MINUTE).await;
    let outcome = verifier.verify::<Value>(&newer).await;
    assert!(is_unknown_kid(&outcome), "{outcome:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn is_unknown_kid(outcome: &Result<Value, VerifyError>) -> bool {
    matches!(
        outcome,
        Err(VerifyError::InvalidToken(InvalidToken::UnknownKid))
    )
}

/// Whether `outcome` is the 503 of a kid held back by the cooldown, with its `Retry-After`.
fn held_back(outcome: &Result<Value, VerifyError>) -> Option<Duration> {
    match outcome {
        Err(VerifyError::KeysUnavailable(unavailable)) => match unavailable.cause() {
            jwkstash_jwks::RefreshError::KidRefetchCoolingDown { retry_after } => {
                assert_eq!(unavailable.retry_after(), Some(*retry_after));
                Some(*retry_after)
            }
            _ => None,
        },
        _ => None,
    }
}

/// One junk token spends the unknown-kid cooldown; the provider rotates within it. The first
/// genuine token of the new key is answered 503 with `Retry-After` = what is left of the
/// cooldown (never 401), a refetch runs when the cooldown ends without waiting for another
/// token, and the retry is accepted. Junk costs one refetch per cooldown, no more.
#[tokio::test(start_paused = true)]
async fn a_junk_kid_before_a_rotation_never_gets_the_new_keys_first_token_refused() {
    for junk_under_a_real_kid in [false, true] {
        let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
        let Fixture {
            clock,
            calls,
            verifier,
        } = Fixture::new(
            vec![
                Ok(modified(&[&old])),
                Ok(modified(&[&old])),
                Ok(modified(&[&old, &new])),
            ],
            Duration::ZERO,
            3,
        );
        verifier
            .verify::<Value>(&token(&old, &clock))
            .await
            .unwrap();
        advance(Duration::from_secs(5)).await;
        // Junk: a made-up kid, or a forged signature under the real kid.
        let junk = if junk_under_a_real_kid {
            let forger = TestKey::ed25519("old");
            token(&forger, &clock)
        } else {
            token_with_random_kid(&old, &clock)
        };
        assert!(verifier.verify::<Value>(&junk).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the junk's refetch");
        // The provider publishes the new key and signs with it, 10 s into the cooldown.
        advance(Duration::from_secs(10)).await;
        let first = token(&new, &clock);
        let outcome = verifier.verify::<Value>(&first).await;
        let retry_after = held_back(&outcome).unwrap_or_else(|| panic!("{outcome:?}"));
        assert_eq!(retry_after, Duration::from_secs(20), "what is left of 30 s");
        // More junk and more first tokens meanwhile: no fetch, all 503 (never 401).
        for _ in 0..50 {
            let outcome = verifier.verify::<Value>(&first).await;
            assert!(held_back(&outcome).is_some(), "{outcome:?}");
            assert!(verifier.verify::<Value>(&junk).await.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // When the cooldown ends the refetch runs by itself; the retry is accepted.
        advance(retry_after).await;
        eventually("the refetch at the cooldown's end", || {
            verifier.stats().fetch_successes == 3
        })
        .await;
        let claims: Value = verifier.verify(&first).await.unwrap();
        assert_eq!(claims["sub"], "user-1");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}

/// A flood of random kids, each token freshly issued, for five cooldowns: one refetch per
/// cooldown at most (the scheduled one included), and valid tokens verify throughout.
#[tokio::test(start_paused = true)]
async fn a_flood_of_fresh_junk_costs_at_most_one_fetch_per_cooldown() {
    let key = rsa_key("k1");
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(
        vec![Ok(modified(&[&key]))],
        Duration::from_millis(100),
        1..=7,
    );
    let valid = token(&key, &clock);
    verifier.verify::<Value>(&valid).await.unwrap();
    let (mut refused, mut held) = (0, 0);
    for _ in 0..150 {
        let outcome = verifier
            .verify::<Value>(&token_with_random_kid(&key, &clock))
            .await;
        if is_unknown_kid(&outcome) {
            refused += 1;
        } else if held_back(&outcome).is_some() {
            held += 1;
        } else {
            panic!("{outcome:?}");
        }
        verifier.verify::<Value>(&valid).await.unwrap();
        advance(Duration::from_secs(1)).await;
    }
    // 150 s: the warm-up and at most one refetch per 30 s (six cooldowns started).
    let fetched = calls.load(Ordering::SeqCst);
    assert!(fetched <= 1 + 6, "{fetched} fetches");
    assert!(
        fetched > 4,
        "the cooldown never let a refetch run: {fetched}"
    );
    assert_eq!(refused + held, 150);
    // Refused: the tokens whose own refetch ran; the rest waited for the next one.
    assert!(
        refused >= 1 && held >= 120,
        "{refused} refused, {held} held back"
    );
}

/// A token with an unknown kid that no key could make valid (expired, another audience,
/// another issuer) is refused without spending the refetch: the next genuine new kid still
/// gets it.
#[tokio::test(start_paused = true)]
async fn junk_that_no_key_could_make_valid_spends_no_refetch() {
    let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
    let Fixture {
        clock,
        calls,
        verifier,
    } = Fixture::new(
        vec![Ok(modified(&[&old])), Ok(modified(&[&old, &new]))],
        Duration::ZERO,
        2,
    );
    verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap();
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let junk = [
        serde_json::json!({ "iss": ISSUER, "aud": AUDIENCE, "iat": now - 9000, "exp": now - 7200 }),
        serde_json::json!({ "iss": ISSUER, "aud": "another-api", "iat": now, "exp": now + 60 }),
        serde_json::json!({ "iss": "https://evil.test/", "aud": AUDIENCE, "iat": now, "exp": now + 60 }),
    ];
    for claims in junk {
        let header = serde_json::json!({ "alg": "EdDSA", "kid": "made-up" });
        let outcome = verifier
            .verify::<Value>(&old.sign_with_header(&header, &claims))
            .await;
        assert!(is_unknown_kid(&outcome), "{outcome:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap();
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
    let before_rotation = token(&old, &clock);
    verifier.verify::<Value>(&before_rotation).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The provider rotates two minutes later.
    advance(2 * MINUTE).await;
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
    // The old key was replaced, not merged: its tokens no longer verify (one issued before the
    // new set was fetched, beyond the leeway, is refused at once).
    let error = verifier
        .verify::<Value>(&before_rotation)
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
        // Within the fetch timeout (6 s), beyond the wait.
        delay: Duration::from_secs(5),
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

/// A key source that never answers (a third-party source without a deadline, a file on a hung
/// mount): counted, and pending forever.
struct NeverAnswers(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl jwkstash_core::KeySource for NeverAnswers {
    fn id(&self) -> &str {
        JWKS_URL
    }

    async fn fetch(
        &self,
        _: &jwkstash_core::Validators,
    ) -> Result<jwkstash_core::Fetched, jwkstash_core::FetchError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

/// The store bounds every source by `fetch_timeout`: cold callers (100 of them, sharing one
/// fetch) get 503 when it passes, not never; during the backoff that follows they are answered
/// at once instead of joining a hung load; the next attempt is bounded alike.
#[tokio::test(start_paused = true)]
async fn a_source_that_never_answers_costs_cold_callers_the_fetch_timeout_and_no_more() {
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = TokioClock::new();
    let timeout = Duration::from_secs(2);
    let verifier = builder(NeverAnswers(Arc::clone(&calls)), Arc::new(clock.clone()))
        .policy(FreshnessPolicy::default().fetch_timeout(timeout))
        .build()
        .unwrap();
    let token = token(&TestKey::ed25519("k1"), &clock);
    let timed_out = |outcome: Result<Value, VerifyError>| match outcome {
        Err(VerifyError::KeysUnavailable(unavailable)) => {
            assert!(
                matches!(
                    unavailable.cause(),
                    jwkstash_jwks::RefreshError::Fetch(jwkstash_core::FetchError::Timeout(after))
                        if *after == timeout
                ),
                "{unavailable:?}"
            );
            unavailable.retry_after().expect("a backoff")
        }
        other => panic!("{other:?}"),
    };
    let started = Instant::now();
    let cold: Vec<_> = (0..100)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify::<Value>(&token).await })
        })
        .collect();
    let mut retry_after = Duration::ZERO;
    for caller in cold {
        retry_after = timed_out(caller.await.unwrap());
    }
    assert_eq!(
        started.elapsed(),
        timeout,
        "cold callers waited past the timeout"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // During the backoff: 503 at once, no load to join.
    let started = Instant::now();
    assert!(verifier.verify::<Value>(&token).await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // After it, one more attempt, bounded alike.
    advance(retry_after).await;
    let started = Instant::now();
    timed_out(verifier.verify::<Value>(&token).await);
    assert_eq!(started.elapsed(), timeout);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(verifier.stats().fetch_failures, 2);
}

/// A background refresh whose task is dropped before it ever runs (its runtime shut down)
/// does not keep the next one from starting: the claim on the refresh ends with the task.
#[test]
fn a_refresh_dropped_before_it_ran_does_not_stop_later_refreshes() {
    let clock = jwkstash_core::ManualClock::default();
    let key = TestKey::ed25519("k1");
    let calls = Arc::new(AtomicUsize::new(0));
    let source = scripted_source_expecting(vec![Ok(modified(&[&key]))], Arc::clone(&calls), 2);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let verifier =
        first.block_on(async { builder(source, Arc::new(clock.clone())).build().unwrap() });
    let token = token(&key, &clock);
    first.block_on(verifier.verify::<Value>(&token)).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // In the refresh-ahead window: the verification starts a refresh and returns before the
    // refresh's task runs; the runtime is then dropped with the task.
    clock.advance(9 * MINUTE + Duration::from_secs(30));
    first.block_on(verifier.verify::<Value>(&token)).unwrap();
    drop(first);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the first refresh ran");
    let second = runtime();
    second.block_on(async {
        verifier.verify::<Value>(&token).await.unwrap();
        eventually("a later refresh ran", || calls.load(Ordering::SeqCst) == 2).await;
    });
}
