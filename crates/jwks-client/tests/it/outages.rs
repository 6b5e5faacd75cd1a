//! Outage timelines against a real HTTP provider on 127.0.0.1 that hangs, answers 500, or
//! answers slowly, through an outage that crosses the expiry of the cached set.
//!
//! Freshness and backoff run on a manual clock, so the request counts are exact; the HTTP side
//! runs in real time. "Did not wait" is proved by causality: the provider still holds the
//! refresh request open when each verification returns.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use jwkstash_core::ManualClock;
use jwkstash_jwks::testkit::{Behaviour, Idp, IdpBuilder, TestKey, eventually};
use jwkstash_jwks::{
    FreshnessPolicy, HttpKeySource, KeyHealth, RefreshError, Verifier, VerifyError,
};
use serde_json::Value;

const TTL: Duration = Duration::from_secs(60);

/// A provider, a verifier of its tokens (TTL 1 min, max_stale 1 h) and the clock they share.
struct Timeline {
    clock: ManualClock,
    idp: Idp,
    verifier: Verifier,
}

impl Timeline {
    async fn start() -> Self {
        Self::with_policy(FreshnessPolicy::default()).await
    }

    async fn with_policy(policy: FreshnessPolicy) -> Self {
        let timeline = Self::unwarmed(policy).await;
        timeline
            .verifier
            .verify::<Value>(&timeline.idp.mint())
            .await
            .unwrap();
        assert_eq!(timeline.idp.jwks_requests(), 1);
        timeline
    }

    /// The same, before any fetch.
    async fn unwarmed(policy: FreshnessPolicy) -> Self {
        let clock = ManualClock::default();
        let idp = IdpBuilder::default()
            .clock(Arc::new(clock.clone()))
            .start()
            .await
            .unwrap();
        // A deadline far beyond the test: a hung request ends only when the test says so.
        let source = HttpKeySource::builder(idp.jwks_url())
            .allow_http(true)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let verifier = Verifier::builder()
            .key_source(source)
            .issuer(idp.issuer())
            .audience(idp.audience())
            .clock(Arc::new(clock.clone()))
            .policy(policy.ttl(TTL))
            .build()
            .unwrap();
        Self {
            clock,
            idp,
            verifier,
        }
    }

    /// A valid token must verify.
    async fn verify(&self) {
        if let Err(error) = self.verifier.verify::<Value>(&self.idp.mint()).await {
            panic!("a valid token was refused during the outage: {error:?}");
        }
    }

    /// Verifies `n` valid tokens, each returning while the refresh request is still open.
    async fn verify_while_the_request_is_open(&self, n: usize) {
        for _ in 0..n {
            self.clock.advance(Duration::from_secs(20));
            self.verify().await;
            assert_eq!(
                self.idp.open_requests(),
                1,
                "the verification returned only after the provider answered"
            );
        }
    }

    /// Steps through the backoff after `failures` failed fetches, `steps` times, with the
    /// provider still failing: just before each delay's lowest jittered value no request goes
    /// out; at its full value exactly one does.
    async fn follow_the_backoff(&self, failures: u32, steps: u32) -> u32 {
        let policy = FreshnessPolicy::default();
        for failures in failures..failures + steps {
            let requests = self.idp.jwks_requests();
            let delay = policy.backoff(failures);
            self.clock.advance(delay.mul_f64(0.75));
            self.verify().await;
            self.clock.advance(delay.mul_f64(0.25));
            self.verify().await;
            let failed = u64::from(failures) + 1;
            eventually("the retry failed", || {
                self.verifier.stats().fetch_failures == failed
            })
            .await;
            assert_eq!(
                self.idp.jwks_requests(),
                requests + 1,
                "after {failures} failures"
            );
        }
        failures + steps
    }

    /// The provider is back: the next step of the backoff brings a fresh set, and from then
    /// on nothing is served stale and nothing more is fetched.
    async fn recover(&self, failures: u32) {
        let requests = self.idp.jwks_requests();
        self.idp.set_behaviour(Behaviour::Serve);
        self.clock
            .advance(FreshnessPolicy::default().backoff(failures));
        self.verify().await;
        eventually("the set was refreshed", || {
            self.verifier.stats().fetch_successes == 2
        })
        .await;
        assert_eq!(self.idp.jwks_requests(), requests + 1);
        let stale = self.verifier.stats().stale_served;
        for _ in 0..10 {
            self.verify().await;
        }
        assert_eq!(self.verifier.stats().stale_served, stale);
        assert_eq!(self.idp.jwks_requests(), requests + 1);
    }
}

#[tokio::test]
async fn a_hanging_provider_never_holds_a_verification() {
    let timeline = Timeline::start().await;
    let idp = &timeline.idp;
    idp.set_behaviour(Behaviour::Hang);
    // Past the expiry: the stale set serves, one refresh goes out and hangs.
    timeline.clock.advance(TTL + Duration::from_secs(1));
    timeline.verify().await;
    eventually("the refresh reached the provider", || {
        idp.open_requests() == 1
    })
    .await;
    // 30 verifications over the next 10 minutes, each back while the request hangs.
    timeline.verify_while_the_request_is_open(30).await;
    assert_eq!(idp.jwks_requests(), 2, "one refresh for the whole hang");
    assert!(timeline.verifier.stats().stale_served >= 31);
    // The hang ends in a 500; the provider keeps failing, then recovers.
    idp.set_behaviour(Behaviour::Status(500));
    idp.release_hung();
    eventually("the hung refresh failed", || {
        timeline.verifier.stats().fetch_failures == 1
    })
    .await;
    let failures = timeline.follow_the_backoff(1, 5).await;
    timeline.recover(failures).await;
}

#[tokio::test]
async fn a_failing_provider_is_asked_on_the_backoff_schedule_only() {
    let timeline = Timeline::start().await;
    let idp = &timeline.idp;
    idp.set_behaviour(Behaviour::Status(500));
    timeline.clock.advance(TTL + Duration::from_secs(1));
    for _ in 0..20 {
        timeline.verify().await;
    }
    eventually("the refresh failed", || {
        timeline.verifier.stats().fetch_failures == 1
    })
    .await;
    // One request per attempt: a 500 is not retried at once, the backoff decides.
    assert_eq!(idp.jwks_requests(), 2);
    let failures = timeline.follow_the_backoff(1, 6).await;
    assert_eq!(idp.jwks_requests(), 2 + 6);
    let stats = timeline.verifier.stats();
    assert_eq!(
        (stats.fetches_cold, stats.fetches_stale),
        (1, 7),
        "{stats:?}"
    );
    timeline.recover(failures).await;
}

#[tokio::test]
async fn a_slow_provider_is_waited_for_in_the_background() {
    let timeline = Timeline::start().await;
    let idp = &timeline.idp;
    idp.set_behaviour(Behaviour::Slow(Duration::from_secs(2)));
    timeline.clock.advance(TTL + Duration::from_secs(1));
    timeline.verify().await;
    eventually("the refresh reached the provider", || {
        idp.open_requests() == 1
    })
    .await;
    timeline.verify_while_the_request_is_open(10).await;
    eventually("the slow answer landed", || {
        timeline.verifier.stats().fetch_successes == 2
    })
    .await;
    assert_eq!(idp.open_requests(), 0);
    assert_eq!(idp.jwks_requests(), 2);
    let stale = timeline.verifier.stats().stale_served;
    timeline.verify().await;
    assert_eq!(timeline.verifier.stats().stale_served, stale, "still stale");
}

#[tokio::test]
async fn past_max_stale_a_verifier_fails_closed_and_comes_back_with_the_provider() {
    let timeline = Timeline::start().await;
    let idp = &timeline.idp;
    idp.set_behaviour(Behaviour::Status(500));
    timeline.clock.advance(TTL + Duration::from_secs(1));
    timeline.verify().await;
    eventually("the refresh failed", || {
        timeline.verifier.stats().fetch_failures == 1
    })
    .await;
    // An hour later the set is past max_stale: the verification waits for a fetch, which
    // fails: 503, never a key older than ttl + max_stale.
    timeline.clock.advance(Duration::from_secs(3600));
    let refused = || async { timeline.verifier.verify::<Value>(&idp.mint()).await };
    let error = refused().await.unwrap_err();
    assert_eq!(error.http_status(), 503, "{error:?}");
    assert_eq!(idp.jwks_requests(), 3);
    // While the source backs off, the answer is 503 at once, with no request.
    let VerifyError::KeysUnavailable(unavailable) = refused().await.unwrap_err() else {
        panic!("expected keys unavailable");
    };
    assert!(unavailable.retry_after().is_some());
    assert_eq!(idp.jwks_requests(), 3);
    // The provider is back: after the backoff the next verification loads and succeeds.
    idp.set_behaviour(Behaviour::Serve);
    timeline
        .clock
        .advance(FreshnessPolicy::default().backoff(2));
    timeline.verify().await;
    assert_eq!(idp.jwks_requests(), 4);
}

#[tokio::test]
async fn an_unknown_kid_while_the_provider_hangs_waits_only_the_bounded_wait() {
    let wait = Duration::from_millis(200);
    let timeline = Timeline::with_policy(FreshnessPolicy::default().unknown_kid_wait(wait)).await;
    let idp = &timeline.idp;
    let first_key = idp.signing_key();
    // The provider rotates to a new key and hangs the refetch.
    idp.set_behaviour(Behaviour::Hang);
    idp.rotate(TestKey::ec_p256("key-2"));
    let rotated = idp.mint();
    let error = timeline
        .verifier
        .verify::<Value>(&rotated)
        .await
        .unwrap_err();
    assert_eq!(
        idp.open_requests(),
        1,
        "the caller waited for the provider's answer"
    );
    let VerifyError::KeysUnavailable(unavailable) = &error else {
        panic!("{error:?}");
    };
    assert!(matches!(unavailable.cause(), RefreshError::Pending { .. }));
    assert!(unavailable.retry_after().is_some());
    // Meanwhile tokens of the known key verify, and more tokens of the new kid join the one
    // refetch instead of starting another.
    let old_token = first_key.sign(&idp.claims());
    timeline.verifier.verify::<Value>(&old_token).await.unwrap();
    assert!(timeline.verifier.verify::<Value>(&rotated).await.is_err());
    assert_eq!(idp.jwks_requests(), 2);
    // The provider answers: the refetch that went on serves the new kid, with no new request.
    idp.set_behaviour(Behaviour::Serve);
    idp.release_hung();
    eventually("the refetch landed", || {
        timeline.verifier.stats().fetch_successes == 2
    })
    .await;
    timeline.verifier.verify::<Value>(&rotated).await.unwrap();
    assert_eq!(idp.jwks_requests(), 2);
    assert_eq!(timeline.verifier.stats().unknown_kid_timeouts, 2);
}

/// Readiness without I/O: unavailable before the first fetch, fresh, stale through the outage
/// (still ready), unavailable past `max_stale` with the time until the next try.
#[tokio::test]
async fn health_tells_a_readiness_probe_what_the_keys_are() {
    let Timeline {
        clock,
        idp,
        verifier,
    } = Timeline::unwarmed(FreshnessPolicy::default()).await;
    let requests = idp.jwks_requests();
    assert_eq!(
        verifier.health(),
        KeyHealth::Unavailable { retry_after: None }
    );
    assert_eq!(idp.jwks_requests(), requests, "health made a request");
    verifier.prefetch().await.unwrap();
    let KeyHealth::Fresh { until } = verifier.health() else {
        panic!("{:?}", verifier.health());
    };
    idp.set_behaviour(Behaviour::Status(500));
    clock.advance(TTL + Duration::from_secs(1));
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    eventually("the refresh failed", || {
        verifier.stats().fetch_failures == 1
    })
    .await;
    let stale = verifier.health();
    assert!(
        matches!(stale, KeyHealth::Stale { since, .. } if since == until),
        "{stale:?}"
    );
    assert!(stale.is_ready());
    clock.advance(Duration::from_secs(3600));
    verifier.verify::<Value>(&idp.mint()).await.unwrap_err();
    let gone = verifier.health();
    assert!(
        matches!(
            gone,
            KeyHealth::Unavailable {
                retry_after: Some(_)
            }
        ),
        "{gone:?}"
    );
    assert!(!gone.is_ready());
}
