//! `HttpKeySource` and the verifier against a real HTTP server on 127.0.0.1 that misbehaves on
//! demand. Real time, short deadlines; the verifier's freshness runs on a manual clock.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwkstash_core::{FetchError, Fetched, KeySource, ManualClock, Validators};
use jwkstash_jwks::testkit::{Behaviour, Idp, IdpBuilder, eventually};
use jwkstash_jwks::{HttpKeySource, KeySetError, RefreshError, Verifier, VerifyError};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_millis(600);

fn source(idp: &Idp) -> HttpKeySource {
    HttpKeySource::builder(idp.jwks_url())
        .allow_http(true)
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

async fn idp_at(clock: &ManualClock) -> Idp {
    IdpBuilder::default()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap()
}

fn verifier(idp: &Idp, clock: &ManualClock) -> Verifier {
    Verifier::builder()
        .key_source(source(idp))
        .issuer(idp.issuer())
        .audience(idp.audience())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn html(body: &str) -> Behaviour {
    Behaviour::Body {
        content_type: "text/html",
        body: body.to_owned(),
    }
}

fn json_body(body: &str) -> Behaviour {
    Behaviour::Body {
        content_type: "application/json",
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn a_200_carries_etag_and_a_conditional_request_gets_304() {
    let idp = Idp::start().await.unwrap();
    idp.set_max_age(Some(300));
    let source = source(&idp);
    let Fetched::Modified {
        etag,
        max_age,
        body,
    } = source.fetch(&Validators::default()).await.unwrap()
    else {
        panic!("expected a body");
    };
    assert!(etag.is_some());
    assert_eq!(max_age, Some(Duration::from_secs(300)));
    assert!(jwkstash_jwks::KeySet::parse(body).is_ok());
    let again = source.fetch(&Validators::with_etag(etag)).await.unwrap();
    assert_eq!(
        again,
        Fetched::NotModified {
            max_age: Some(Duration::from_secs(300))
        }
    );
}

#[tokio::test]
async fn a_304_extends_the_cached_set_without_a_new_body() {
    let clock = ManualClock::default();
    let idp = idp_at(&clock).await;
    let verifier = verifier(&idp, &clock);
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    let before = verifier.key_set().await.unwrap();
    clock.advance(Duration::from_secs(11 * 60));
    // The stale set is served at once and refreshed in the background.
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    eventually("the set was refreshed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    assert_eq!(idp.jwks_requests(), 2);
    // The same parsed set, kept rather than rebuilt.
    assert!(Arc::ptr_eq(&before, &verifier.key_set().await.unwrap()));
}

/// Whether a refresh error is the one a case expects.
type Expected = fn(&RefreshError) -> bool;

/// Every failure: a typed error within the deadline, and a warm cache left as it was.
#[tokio::test]
async fn failures_are_typed_bounded_and_leave_the_cached_set_untouched() {
    let clock = ManualClock::default();
    let idp = idp_at(&clock).await;
    let other_host = Idp::start().await.unwrap();
    let oversize = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(300 * 1024));
    let cases: Vec<(Behaviour, Expected, usize)> = vec![
        (
            Behaviour::Status(404),
            |e| matches!(e, RefreshError::Fetch(FetchError::Status(404))),
            1,
        ),
        (
            Behaviour::Status(429),
            |e| matches!(e, RefreshError::Fetch(FetchError::Status(429))),
            1,
        ),
        (
            Behaviour::Status(500),
            |e| matches!(e, RefreshError::Fetch(FetchError::Status(500))),
            1,
        ),
        (
            Behaviour::Status(503),
            |e| matches!(e, RefreshError::Fetch(FetchError::Status(503))),
            1,
        ),
        (
            html("<html><body>Bad gateway</body></html>"),
            |e| matches!(e, RefreshError::KeySet(KeySetError::NotAKeySet(_))),
            1,
        ),
        (
            json_body(""),
            |e| matches!(e, RefreshError::KeySet(KeySetError::NotAKeySet(_))),
            1,
        ),
        (
            json_body("{}"),
            |e| matches!(e, RefreshError::KeySet(KeySetError::NotAKeySet(_))),
            1,
        ),
        (
            json_body(r#"{"keys":{}}"#),
            |e| matches!(e, RefreshError::KeySet(KeySetError::NotAKeySet(_))),
            1,
        ),
        (
            json_body(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            |e| matches!(e, RefreshError::KeySet(KeySetError::NoUsableKey { .. })),
            1,
        ),
        (
            json_body(&oversize),
            |e| matches!(e, RefreshError::Fetch(FetchError::TooLarge { .. })),
            1,
        ),
        (
            Behaviour::Endless,
            |e| matches!(e, RefreshError::Fetch(FetchError::TooLarge { .. })),
            1,
        ),
        (
            Behaviour::Hang,
            |e| matches!(e, RefreshError::Fetch(FetchError::Timeout(_))),
            1,
        ),
        (
            Behaviour::Trickle(Duration::from_millis(50)),
            |e| matches!(e, RefreshError::Fetch(FetchError::Timeout(_))),
            1,
        ),
        (
            Behaviour::RedirectTo(other_host.jwks_url()),
            |e| matches!(e, RefreshError::Fetch(FetchError::Redirect)),
            1,
        ),
    ];
    for (behaviour, expected, requests) in cases {
        // Cold: the typed cause, within the deadline.
        idp.set_behaviour(behaviour.clone());
        let cold = verifier(&idp, &clock);
        let before = idp.jwks_requests();
        let started = Instant::now();
        let error = cold.verify::<Value>(&idp.mint()).await.unwrap_err();
        assert!(
            started.elapsed() < DEADLINE + Duration::from_secs(1),
            "{behaviour:?} took {:?}",
            started.elapsed()
        );
        let VerifyError::KeysUnavailable(unavailable) = &error else {
            panic!("{behaviour:?}: {error:?}");
        };
        assert!(
            expected(unavailable.cause()),
            "{behaviour:?}: {:?}",
            unavailable.cause()
        );
        assert_eq!(
            idp.jwks_requests() - before,
            requests,
            "{behaviour:?}: requests"
        );

        // Warm: the stale set is served and stays the same set.
        idp.set_behaviour(Behaviour::Serve);
        let warm = verifier(&idp, &clock);
        warm.verify::<Value>(&idp.mint()).await.unwrap();
        let good = warm.key_set().await.unwrap();
        idp.set_behaviour(behaviour.clone());
        clock.advance(Duration::from_secs(11 * 60));
        // Served stale at once; the refresh fails in the background.
        warm.verify::<Value>(&idp.mint()).await.unwrap();
        eventually("the background refresh failed", || {
            warm.stats().fetch_failures == 1
        })
        .await;
        warm.verify::<Value>(&idp.mint()).await.unwrap();
        assert!(
            Arc::ptr_eq(&good, &warm.key_set().await.unwrap()),
            "{behaviour:?} replaced the set"
        );
        assert_eq!(warm.stats().fetch_failures, 1, "{behaviour:?}");
        idp.set_behaviour(Behaviour::Serve);
    }
    assert_eq!(
        other_host.jwks_requests(),
        0,
        "a redirect reached another host"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_retried_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let source = HttpKeySource::builder(url)
        .allow_http(true)
        .build()
        .unwrap();
    let started = Instant::now();
    let error = source.fetch(&Validators::default()).await.unwrap_err();
    assert!(matches!(error, FetchError::Connect(_)), "{error:?}");
    assert!(error.is_temporary());
    // The one retry waits 100–300 ms.
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn the_outage_timeline_serves_stale_then_fails_closed() {
    let clock = ManualClock::default();
    let idp = idp_at(&clock).await;
    let verifier = verifier(&idp, &clock);
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    idp.set_behaviour(Behaviour::Status(503));
    // Fresh for 10 min, then stale for up to an hour: tokens keep verifying.
    for minute in [11, 30, 60, 69] {
        clock.set(jwkstash_core::ManualClock::default().now_plus(minute));
        verifier.verify::<Value>(&idp.mint()).await.unwrap();
    }
    // Past max_stale: keys unavailable (503), not an invalid token (401).
    clock.set(jwkstash_core::ManualClock::default().now_plus(71));
    let error = verifier.verify::<Value>(&idp.mint()).await.unwrap_err();
    assert_eq!(error.http_status(), 503);
    // The provider recovers: the next request after the backoff loads a set again.
    idp.set_behaviour(Behaviour::Serve);
    clock.advance(Duration::from_secs(120));
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
}

trait MinutesLater {
    fn now_plus(&self, minutes: u64) -> std::time::SystemTime;
}

impl MinutesLater for ManualClock {
    fn now_plus(&self, minutes: u64) -> std::time::SystemTime {
        use jwkstash_core::Clock;
        self.now() + Duration::from_secs(minutes * 60)
    }
}

/// Local development in one line: plain http to a provider on this machine, by name, and to no
/// other host.
#[tokio::test]
async fn plain_http_is_allowed_to_loopback_hosts_only_and_only_when_asked() {
    let clock = ManualClock::default();
    let idp = idp_at(&clock).await;
    let build = |url: String, loopback: bool| {
        let builder = Verifier::builder()
            .jwks_url(url)
            .issuer(idp.issuer())
            .audience(idp.audience())
            .clock(Arc::new(clock.clone()));
        if loopback {
            builder.allow_http_loopback().build()
        } else {
            builder.build()
        }
    };
    assert!(matches!(
        build(idp.jwks_url(), false),
        Err(jwkstash_jwks::BuildError::InsecureUrl(_))
    ));
    let local = build(idp.jwks_url(), true).unwrap();
    local.verify::<Value>(&idp.mint()).await.unwrap();
    // `localhost` by name too.
    let by_name = idp.jwks_url().replace("127.0.0.1", "localhost");
    build(by_name, true)
        .unwrap()
        .verify::<Value>(&idp.mint())
        .await
        .unwrap();
    for remote in ["http://idp.example.com/jwks", "http://10.1.2.3/jwks"] {
        assert!(matches!(
            build(remote.to_owned(), true),
            Err(jwkstash_jwks::BuildError::InsecureUrl(_))
        ));
    }
    // Discovery the same way.
    let discovered = Verifier::builder()
        .discover(idp.issuer())
        .allow_http_loopback()
        .audience(idp.audience())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    discovered.verify::<Value>(&idp.mint()).await.unwrap();
    assert!(
        Verifier::builder()
            .discover(idp.issuer())
            .audience(idp.audience())
            .build()
            .is_err()
    );
}
