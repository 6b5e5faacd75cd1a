//! Sources that are not one HTTP endpoint: an inline or file JWKS, pinned keys merged into a
//! fetched set, and a failover pair over real HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jwkstash_core::{KeySource, TokioClock};
use jwkstash_jwks::testkit::{Behaviour, Idp, TestKey, jwks};
use jwkstash_jwks::{
    BuildError, Failover, InvalidToken, KeySetError, StaticKeySource, Verifier, VerifyError,
};
use serde_json::{Value, json};

/// A directory of this test's own, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "jwkstash-sources-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn verifier(source: impl KeySource + 'static, clock: &TokioClock) -> Verifier {
    builder(source, Arc::new(clock.clone())).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_inline_jwks_verifies_without_any_network() {
    let key = TestKey::ec_p256("k1");
    let clock = TokioClock::new();
    let source = StaticKeySource::from_json(jwks(&[&key]).to_string()).unwrap();
    let verifier = verifier(source, &clock);
    let claims: Value = verifier.verify(&token(&key, &clock)).await.unwrap();
    assert_eq!(claims["sub"], "user-1");
    let outcome = verifier
        .verify::<Value>(&token(&TestKey::ec_p256("k1"), &clock))
        .await;
    assert!(matches!(
        outcome,
        Err(VerifyError::InvalidToken(InvalidToken::BadSignature))
    ));
}

#[test]
fn an_inline_jwks_is_held_to_the_strict_parser() {
    let refused = |document: Value| StaticKeySource::from_json(document.to_string()).unwrap_err();
    assert!(matches!(
        refused(json!({ "kes": [] })),
        KeySetError::NotAKeySet(_)
    ));
    let mut private = TestKey::ec_p256("k1").public_jwk();
    private["d"] = json!("AAAA");
    let only_skip = |error: KeySetError| match error {
        KeySetError::NoUsableKey { skipped } if skipped.len() == 1 => {
            (skipped[0].kid.clone(), skipped[0].reason)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        only_skip(refused(json!({ "keys": [private] }))),
        (Some("k1".to_owned()), jwkstash_jwks::SkipReason::PrivateKey)
    );
    let oct = json!({ "kty": "oct", "kid": "h", "k": "c2VjcmV0" });
    assert_eq!(
        only_skip(refused(json!({ "keys": [oct] }))),
        (
            Some("h".to_owned()),
            jwkstash_jwks::SkipReason::SymmetricKey
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_jwks_file_is_read_again_at_each_refresh_and_a_bad_one_keeps_the_last_good_set() {
    let (old, new) = (TestKey::ed25519("k1"), TestKey::ed25519("k2"));
    let dir = Scratch::new();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&old]).to_string()).unwrap();
    let clock = TokioClock::new();
    let verifier = verifier(StaticKeySource::from_file(&path).unwrap(), &clock);
    verifier
        .verify::<Value>(&token(&old, &clock))
        .await
        .unwrap();

    std::fs::write(&path, jwks(&[&new]).to_string()).unwrap();
    verifier.refresh().await.unwrap();
    verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap();

    // A broken file: the refresh fails, the last good set keeps verifying.
    std::fs::write(&path, "{ not json").unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(verifier.refresh().await.is_err());
    verifier
        .verify::<Value>(&token(&new, &clock))
        .await
        .unwrap();
}

#[test]
fn a_missing_or_oversized_jwks_file_is_refused_when_built() {
    let dir = Scratch::new();
    let missing = StaticKeySource::from_file(dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(missing, KeySetError::Unreadable(_)), "{missing:?}");
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; jwkstash_jwks::DEFAULT_MAX_BODY_BYTES + 1]).unwrap();
    let oversized = StaticKeySource::from_file(&huge).unwrap_err();
    assert!(
        matches!(&oversized, KeySetError::Unreadable(why) if why.contains("exceeds")),
        "{oversized:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn pinned_keys_are_merged_under_their_own_kids_and_win_over_a_fetched_namesake() {
    let (fetched, pinned) = (TestKey::ec_p256("k1"), TestKey::ed25519("pinned"));
    let impostor = TestKey::ec_p256("pinned");
    let clock = TokioClock::new();
    let verifier = builder(once_source(&[&fetched, &impostor]), Arc::new(clock.clone()))
        .pinned_keys(jwks(&[&pinned]).to_string())
        .build()
        .unwrap();
    verifier
        .verify::<Value>(&token(&fetched, &clock))
        .await
        .unwrap();
    verifier
        .verify::<Value>(&token(&pinned, &clock))
        .await
        .unwrap();
    // The fetched key that claims the pinned kid is dropped (the mock allows no refetch: the
    // unknown-kid budget was spent on nothing, the pinned kid is known).
    let outcome = verifier.verify::<Value>(&token(&impostor, &clock)).await;
    assert!(
        matches!(
            outcome,
            Err(VerifyError::InvalidToken(InvalidToken::AlgorithmMismatch))
        ),
        "{outcome:?}"
    );
    let set = verifier.key_set().await.unwrap();
    assert_eq!(set.keys().len(), 2);
}

#[test]
fn pinned_keys_need_a_usable_key_with_a_kid() {
    let build = |pinned: Value| {
        builder(silent_source(), Arc::new(TokioClock::new()))
            .pinned_keys(pinned.to_string())
            .build()
            .unwrap_err()
    };
    let mut no_kid = TestKey::ec_p256("x").public_jwk();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert!(matches!(
        build(json!({ "keys": [no_kid] })),
        BuildError::PinnedKeys(_)
    ));
    assert!(matches!(
        build(json!({ "keys": [] })),
        BuildError::PinnedKeys(KeySetError::NoUsableKey { skipped }) if skipped.is_empty()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_source_serves_from_the_secondary_while_the_primary_fails() {
    let primary = Idp::start().await.unwrap();
    let secondary = Idp::start().await.unwrap();
    secondary.set_behaviour(Behaviour::Body {
        content_type: "application/json",
        body: jwks(&[&primary.signing_key()]).to_string(),
    });
    primary.set_behaviour(Behaviour::Status(503));
    // The verifier's clock, started at the providers' (system) time so their tokens are valid.
    let clock = jwkstash_core::ManualClock::new(std::time::SystemTime::now());
    let verifier = Verifier::builder()
        .key_source(Failover::new(primary.key_source(), secondary.key_source()))
        .clock(Arc::new(clock.clone()))
        .issuer(primary.issuer())
        .audience(primary.audience())
        .build()
        .unwrap();
    verifier.verify::<Value>(&primary.mint()).await.unwrap();
    assert_eq!((primary.jwks_requests(), secondary.jwks_requests()), (1, 1));

    // The primary is back: the next fetch uses it, the secondary is not asked.
    primary.set_behaviour(Behaviour::Serve);
    let refreshed = verifier.refresh().await.unwrap();
    assert!(refreshed.fetched);
    assert_eq!((primary.jwks_requests(), secondary.jwks_requests()), (2, 1));

    // A primary that answers garbage fails over too; both failing is a failure.
    clock.advance(Duration::from_secs(6)); // past min_refresh_interval (5 s) and the backoff
    primary.set_behaviour(Behaviour::Body {
        content_type: "application/json",
        body: "{\"keys\": []}".into(),
    });
    secondary.set_behaviour(Behaviour::Status(500));
    let error = verifier.refresh().await.unwrap_err();
    assert!(error.to_string().contains("unavailable"), "{error}");
    assert_eq!((primary.jwks_requests(), secondary.jwks_requests()), (3, 2));
    verifier.verify::<Value>(&primary.mint()).await.unwrap();
}
