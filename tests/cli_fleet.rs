//! `jwkstash refresh` against a fleet sharing a real redis-server: the operator's command after
//! an emergency rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jwkstash::testkit::{Idp, TestKey};
use jwkstash::{InvalidToken, KeyEvent, RedisCache, Verifier, VerifyError};
use jwkstash_redis::testkit::RedisServer;
use serde_json::Value;
use tokio::process::Command;

const SECRET: &str = "a fleet secret of at least thirty-two bytes";
const PREFIX: &str = "cli-fleet";

async fn refresh(redis: &str, idp: &Idp, extra: &[&str]) -> (i32, String, String) {
    let jwks = idp.jwks_url();
    let mut args = vec![
        "refresh",
        "--redis",
        redis,
        "--prefix",
        PREFIX,
        "--issuer",
        idp.issuer(),
        "--jwks",
        &jwks,
        "--allow-http",
    ];
    args.extend_from_slice(extra);
    let output = Command::new(env!("CARGO_BIN_EXE_jwkstash"))
        .args(&args)
        .env("JWKSTASH_HMAC_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn service(redis: &str, idp: &Idp) -> Verifier {
    let tier = RedisCache::builder()
        .url(redis)
        .prefix(PREFIX)
        .hmac_secret(SECRET.as_bytes().to_vec())
        .build()
        .await
        .unwrap();
    idp.verifier_builder()
        .shared_tier(Arc::new(tier))
        .build()
        .unwrap()
}

/// Waits for the set with the kid `kid` to reach a service (by its events, not by polling).
async fn hears_of(
    events: &mut tokio::sync::broadcast::Receiver<KeyEvent>,
    kid: &str,
) -> Vec<String> {
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let KeyEvent::KeySetChanged { added, removed, .. } = events.recv().await.unwrap()
                && added.iter().any(|added| added == kid)
            {
                return removed;
            }
        }
    })
    .await;
    heard.expect("the service never heard of the refreshed set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_replaces_the_set_of_every_instance_with_one_fetch() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let idp = Idp::start().await.unwrap();
    let services = [service(&url, &idp).await, service(&url, &idp).await];
    // Issued five minutes ago: the refreshed set, fetched after it (beyond the leeway), says
    // its key is gone.
    let issued = idp.claims()["iat"].as_u64().unwrap() - 300;
    let stolen = idp.mint_with(serde_json::json!({ "iat": issued }));
    for service in &services {
        service.verify::<Value>(&stolen).await.unwrap();
    }
    assert_eq!(idp.jwks_requests(), 1);

    // The compromised key is removed upstream; the services' sets are fresh for ten minutes.
    idp.rotate(TestKey::ec_p256("key-2"));
    let mut events: Vec<_> = services.iter().map(Verifier::subscribe).collect();
    let (code, out, err) = refresh(&url, &idp, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("fetched") && out.contains("kids: key-2"),
        "{out}"
    );
    assert_eq!(idp.jwks_requests(), 2);
    for events in &mut events {
        assert_eq!(hears_of(events, "key-2").await, ["key-1"]);
    }
    for service in &services {
        let outcome = service.verify::<Value>(&stolen).await;
        assert!(
            matches!(
                outcome,
                Err(VerifyError::InvalidToken(InvalidToken::UnknownKid))
            ),
            "{outcome:?}"
        );
        service.verify::<Value>(&idp.mint()).await.unwrap();
    }
    assert_eq!(
        idp.jwks_requests(),
        2,
        "the services fetched after the refresh"
    );

    // A second operator within the interval shares the first refresh.
    let (code, out, _) = refresh(&url, &idp, &[]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("already refreshed"), "{out}");
    assert_eq!(idp.jwks_requests(), 2);

    // --drop deletes the shared entry: a new instance fetches for itself.
    let (code, out, _) = refresh(&url, &idp, &["--drop"]).await;
    assert_eq!((code, out.trim()), (0, "dropped the shared key set"));
    service(&url, &idp).await.prefetch().await.unwrap();
    assert_eq!(idp.jwks_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_the_secret_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_jwkstash"))
        .args([
            "refresh",
            "--redis",
            "redis://127.0.0.1:1",
            "--issuer",
            "https://idp.test/",
        ])
        .env_remove("JWKSTASH_HMAC_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("JWKSTASH_HMAC_SECRET"), "{err}");
}
