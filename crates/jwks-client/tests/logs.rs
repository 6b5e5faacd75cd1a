//! What reaches the logs: a span per verification with issuer, kid hash and outcome; never a
//! token, never a raw kid. One global subscriber for this binary (scoped subscribers and
//! parallel tests make tracing's callsite cache unreliable), and one test at a time.
#![allow(clippy::unwrap_used)]

#[path = "it/common/mod.rs"]
mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use jwkstash_core::{ManualClock, MockKeySource};
use jwkstash_jwks::testkit::TestKey;
use jwkstash_jwks::{InvalidToken, Verifier, VerifyError};
use serde_json::{Value, json};

/// The log buffer of the global subscriber, and a lock so that tests read only their own lines.
fn logs() -> &'static (Logs, tokio::sync::Mutex<()>) {
    static LOGS: OnceLock<(Logs, tokio::sync::Mutex<()>)> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        (logs, tokio::sync::Mutex::new(()))
    })
}

fn verifier(key: &TestKey, clock: &ManualClock) -> Verifier {
    let mut source = MockKeySource::new();
    source.expect_id().return_const(JWKS_URL.to_owned());
    let answer = modified(&[key]);
    source.expect_fetch().returning(move |_| Ok(answer.clone()));
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

#[tokio::test]
async fn each_verification_has_a_span_with_issuer_kid_hash_and_outcome_but_never_the_token() {
    let (logs, lock) = logs();
    let _one_at_a_time = lock.lock().await;
    logs.0.lock().unwrap().clear();
    let clock = ManualClock::default();
    let key = TestKey::ed25519("secret-looking-kid");
    let verifier = verifier(&key, &clock);
    let good = token(&key, &clock);
    verifier.verify::<Value>(&good).await.unwrap();
    let mut expired = claims(&clock);
    expired["exp"] = json!(1);
    let bad = key.sign(&expired);
    assert!(verifier.verify::<Value>(&bad).await.is_err());

    let logged = logs.text();
    assert!(logged.contains("jwkstash.verify"), "{logged}");
    assert!(logged.contains(&format!("issuer=\"{ISSUER}\"")), "{logged}");
    assert!(logged.contains("outcome=\"verified\""), "{logged}");
    assert!(logged.contains("outcome=\"expired\""), "{logged}");
    assert!(logged.contains("key set loaded"), "{logged}");
    assert!(
        !logged.contains("secret-looking-kid"),
        "the raw kid was logged"
    );
    for token in [&good, &bad] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logged.contains(signature), "a token was logged");
    }
}

#[tokio::test]
async fn hostile_kids_get_clean_errors_and_never_reach_a_log_line() {
    let (logs, lock) = logs();
    let _one_at_a_time = lock.lock().await;
    logs.0.lock().unwrap().clear();
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let verifier = verifier(&key, &clock);
    let long = "K".repeat(8 * 1024);
    let kids = [
        json!(long),
        json!("../../etc/passwd"),
        json!("kid\r\nX-Injected: 1"),
        json!("nul\u{0}kid"),
        json!("<script>alert(1)</script>"),
        json!(42),
        json!({ "nested": ["kid"] }),
        json!(null),
    ];
    for kid in &kids {
        let token = key.sign_with_header(&json!({ "alg": "EdDSA", "kid": kid }), &claims(&clock));
        let error = verifier.verify::<Value>(&token).await.unwrap_err();
        // A well-formed kid the set lacks: refused, or (a fresh token, while the cooldown
        // holds the refetch back) answered 503 until the next refetch.
        assert!(
            matches!(
                &error,
                VerifyError::InvalidToken(InvalidToken::InvalidKid | InvalidToken::UnknownKid)
            ) || matches!(
                &error,
                VerifyError::KeysUnavailable(unavailable)
                    if matches!(unavailable.cause(), jwkstash_jwks::RefreshError::KidRefetchCoolingDown { .. })
            ),
            "{error:?}"
        );
    }
    let logged = logs.text();
    assert!(
        logged.contains("key set loaded"),
        "the log capture saw nothing"
    );
    for needle in [
        "KKKKKKKK",
        "etc/passwd",
        "X-Injected",
        "nul\u{0}kid",
        "<script>",
    ] {
        assert!(
            !logged.contains(needle),
            "a raw kid reached the logs: {needle:?}"
        );
    }
}

/// A failed refresh is one warning, however many verifications were served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_warning_per_failed_fetch_however_many_callers() {
    let (logs, lock) = logs();
    let _one_at_a_time = lock.lock().await;
    logs.0.lock().unwrap().clear();
    let clock = ManualClock::default();
    let key = TestKey::ed25519("k1");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = Slow {
        inner: scripted_source(vec![Ok(modified(&[&key])), Err(())], Arc::clone(&calls)),
        delay: std::time::Duration::from_millis(50),
    };
    let verifier = builder(source, Arc::new(clock.clone())).build().unwrap();
    let token = token(&key, &clock);
    verifier.verify::<Value>(&token).await.unwrap();
    clock.advance(std::time::Duration::from_secs(11 * 60));
    // 400 verifications while the one refresh is in flight and after it failed.
    let callers: Vec<_> = (0..400)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify::<Value>(&token).await })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    jwkstash_jwks::testkit::eventually("the refresh failed", || {
        verifier.stats().fetch_failures == 1
    })
    .await;
    for _ in 0..100 {
        verifier.verify::<Value>(&token).await.unwrap();
    }
    let logged = logs.text();
    let warnings = logged
        .lines()
        .filter(|line| line.contains(" WARN "))
        .count();
    assert_eq!(warnings, 1, "{logged}");
    assert!(logged.contains("key set fetch failed"), "{logged}");
    assert_eq!(verifier.stats().stale_served, 500);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// An operator sees which instance fetched and why, and a warning when the fetching instance
/// lost the fleet's lease (another instance may then have fetched too).
#[tokio::test(start_paused = true)]
async fn fetches_name_their_instance_and_reason_and_a_lost_lease_warns() {
    let (logs, lock) = logs();
    let _one_at_a_time = lock.lock().await;
    logs.0.lock().unwrap().clear();
    let clock = jwkstash_core::TokioClock::new();
    let key = TestKey::ed25519("k1");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = Slow {
        inner: scripted_source(vec![Ok(modified(&[&key]))], Arc::clone(&calls)),
        delay: std::time::Duration::from_millis(300),
    };
    let shared = TestTier::losing_leases(
        jwkstash_memory::MemoryCache::<Arc<jwkstash_jwks::KeySet>>::builder()
            .clock(Arc::new(clock.clone()))
            .build(),
    );
    let verifier = builder(source, Arc::new(clock.clone()))
        .shared_tier(Arc::new(shared))
        .lease_ttl(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();
    let logged = logs.text();
    let event = logged
        .lines()
        .find(|line| line.contains("fetching the key set"))
        .unwrap_or_else(|| panic!("no fetch event: {logged}"));
    assert!(
        event.contains("reason=\"cold\"") && event.contains("instance="),
        "{event}"
    );
    assert!(
        logged
            .lines()
            .any(|line| line.contains(" WARN ") && line.contains("lost the fleet's fetch lease")),
        "{logged}"
    );
    let stats = verifier.stats();
    assert_eq!(
        (
            stats.fetches_cold,
            stats.fetches_stale,
            stats.fetches_unknown_kid
        ),
        (1, 0, 0)
    );
}

/// The cache stack's one error policy: a failing shared tier is a miss, counted, and warned
/// about at most once per 10 s however many reads fail.
#[tokio::test]
async fn a_failing_shared_tier_warns_once_however_many_reads_fail() {
    let (logs, lock) = logs();
    let _one_at_a_time = lock.lock().await;
    logs.0.lock().unwrap().clear();
    let clock = ManualClock::default();
    let near = Arc::new(jwkstash_core::testkit::MapCache::<Vec<u8>>::new(Arc::new(
        clock,
    )));
    let shared = Arc::new(jwkstash_core::testkit::FailingCache::default());
    let tiered = jwkstash_core::Tiered::new(near, Arc::clone(&shared));
    for _ in 0..100 {
        assert_eq!(tiered.read::<Vec<u8>>("k", Some).await.unwrap(), None);
    }
    assert_eq!((shared.calls(), tiered.shared_failures()), (100, 100));
    let logged = logs.text();
    let warnings = logged
        .lines()
        .filter(|line| line.contains(" WARN ") && line.contains("cache tier failed"))
        .count();
    assert_eq!(warnings, 1, "{logged}");
}

/// Keycloak publishes an encryption key (`use: enc`) beside its signing key by default. A key
/// set is parsed on every read of a shared or snapshot tier, twice in a `Failover` and at every
/// poll while an instance waits for the fleet's lease: the skipped key is warned about once per
/// document per process, and at debug level after that.
#[tokio::test]
async fn a_skipped_key_is_warned_about_once_per_set_however_often_the_set_is_parsed() {
    use jwkstash_core::CacheValue;
    use jwkstash_jwks::{Failover, KeySet, SkipReason};
    let (logs, lock) = logs();
    let _one_at_a_time = lock.lock().await;
    logs.0.lock().unwrap().clear();
    let clock = ManualClock::default();
    let key = TestKey::ed25519("sig-1");
    let mut enc = TestKey::ed25519("enc-once").public_jwk();
    enc["use"] = json!("enc");
    let document = json!({ "keys": [key.public_jwk(), enc] }).to_string();

    // 100 parses as a Redis or snapshot read makes them, and 100 direct ones.
    for _ in 0..100 {
        let set = <KeySet as CacheValue>::from_bytes(document.as_bytes()).unwrap();
        assert_eq!(set.skipped()[0].reason, SkipReason::NotForSignatures);
        KeySet::parse(document.clone()).unwrap();
    }
    // A verifier over a Failover (which parses to decide, then the store parses again).
    let verifier = builder(
        Failover::new(serving(document.clone()), silent_source()),
        Arc::new(clock.clone()),
    )
    .build()
    .unwrap();
    verifier
        .verify::<Value>(&token(&key, &clock))
        .await
        .unwrap();

    let skipped_lines = |level: &str| {
        logs.text()
            .lines()
            .filter(|line| {
                line.contains(level)
                    && line.contains("skipped a key of the JWKS")
                    && line.contains("enc-once")
            })
            .count()
    };
    assert_eq!(skipped_lines(" WARN "), 1, "{}", logs.text());
    assert!(skipped_lines(" DEBUG ") >= 200, "{}", logs.text());

    // Another document (another fingerprint) is warned about again, once.
    let mut other = TestKey::ed25519("enc-once").public_jwk();
    other["use"] = json!("enc");
    let second = json!({ "keys": [TestKey::ed25519("sig-2").public_jwk(), other] }).to_string();
    for _ in 0..100 {
        KeySet::parse(second.clone()).unwrap();
    }
    assert_eq!(skipped_lines(" WARN "), 2, "{}", logs.text());
}
