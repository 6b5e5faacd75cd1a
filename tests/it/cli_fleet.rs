//! `jwkstash refresh` against a fleet sharing a real redis-server: the operator's command after
//! an emergency rotation. It names the entry the fleet's verifiers announced for the issuer,
//! whatever their configuration (pinned keys, a failover, an issuer template, another spelling
//! of the issuer), refuses an absent or ambiguous one, and the fleet fetches once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jwkstash::events::KeyEvent;
use jwkstash::issuers::IssuerTemplate;
use jwkstash::source::Failover;
use jwkstash::testkit::{Idp, TestKey, jwks};
use jwkstash::tier::Directory;
use jwkstash::{InvalidToken, RedisCache, Verifier, VerifierBuilder, VerifyError};
use jwkstash_redis::testkit::RedisServer;
use serde_json::Value;
use tokio::process::Command;

const SECRET: &str = "a fleet secret of at least thirty-two bytes";

/// `jwkstash refresh --redis URL --prefix PREFIX ARGS`: exit code, stdout, stderr.
async fn refresh(redis: &str, prefix: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jwkstash"))
        .args(["refresh", "--redis", redis, "--prefix", prefix])
        .args(args)
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

async fn tier(redis: &str, prefix: &str) -> RedisCache {
    RedisCache::builder()
        .url(redis)
        .prefix(prefix)
        .hmac_secret(SECRET.as_bytes().to_vec())
        .build()
        .await
        .unwrap()
}

/// A service of the fleet under `prefix`, built by `builder`, warmed, and announced in the
/// fleet's directory.
async fn service(redis: &str, prefix: &str, builder: VerifierBuilder) -> Verifier {
    let shared = tier(redis, prefix).await;
    let verifier = builder.shared_tier(Arc::new(shared)).build().unwrap();
    verifier.prefetch().await.unwrap();
    let directory = tier(redis, prefix).await;
    let mut entries = 0;
    for _ in 0..100 {
        entries = directory.announced().await.unwrap().len();
        if entries > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(entries > 0, "the service never announced its entry");
    verifier
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

fn prefix() -> String {
    format!("cli-fleet-{:08x}", fastrand::u32(..))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_replaces_the_set_of_every_instance_with_one_fetch() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (url, prefix) = (redis.url(), prefix());
    let idp = Idp::start().await.unwrap();
    // Issued five minutes ago: the refreshed set, fetched after it (beyond the leeway), says
    // its key is gone.
    let issued = idp.claims()["iat"].as_u64().unwrap() - 300;
    let stolen = idp.mint_with(serde_json::json!({ "iat": issued }));
    let services = [
        service(&url, &prefix, idp.verifier_builder()).await,
        service(&url, &prefix, idp.verifier_builder()).await,
    ];
    for service in &services {
        service.verify::<Value>(&stolen).await.unwrap();
    }
    assert_eq!(idp.jwks_requests(), 1);

    // The compromised key is removed upstream; the services' sets are fresh for ten minutes.
    idp.rotate(TestKey::ec_p256("key-2"));
    let mut events: Vec<_> = services.iter().map(Verifier::subscribe).collect();
    let (code, out, err) = refresh(&url, &prefix, &["--issuer", idp.issuer()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("fetched") && out.contains("kids: key-2"),
        "{out}"
    );
    assert_eq!(idp.jwks_requests(), 2, "one fetch for the fleet");
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
    let (code, out, _) = refresh(&url, &prefix, &["--issuer", idp.issuer()]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("already refreshed"), "{out}");
    assert_eq!(idp.jwks_requests(), 2);

    // --drop deletes the shared entry: a new instance fetches for itself.
    let (code, out, _) = refresh(&url, &prefix, &["--issuer", idp.issuer(), "--drop"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("dropped the shared key set jwks:"), "{out}");
    service(&url, &prefix, idp.verifier_builder()).await;
    assert_eq!(idp.jwks_requests(), 3);
}

/// Each configuration whose entry name the old command could not rebuild from its flags: the
/// command finds the entry the service announced, and the service's own settings fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_names_the_entry_of_pinned_failover_template_and_respelled_verifiers() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let backup = Idp::start().await.unwrap();
    let pinned = jwks(&[&TestKey::ed25519("pinned")]).to_string();
    for config in ["pinned", "failover", "template", "spelling"] {
        let (idp, prefix) = (Idp::start().await.unwrap(), prefix());
        let template = format!("{}tenants/{{tenantid}}/v2.0", idp.issuer());
        let (builder, asked_for) = match config {
            "pinned" => (
                idp.verifier_builder().pinned_keys(&pinned),
                idp.issuer().to_owned(),
            ),
            "failover" => (
                Verifier::builder()
                    .key_source(Failover::new(idp.key_source(), backup.key_source()))
                    .issuer(idp.issuer())
                    .audience(idp.audience()),
                idp.issuer().to_owned(),
            ),
            "template" => (
                Verifier::builder()
                    .key_source(idp.key_source())
                    .issuer_template(IssuerTemplate::new(template.as_str(), "tid").unwrap())
                    .audience(idp.audience()),
                template.replace("{tenantid}", "72f988bf"),
            ),
            _ => (
                idp.verifier_builder()
                    .issuer(idp.issuer().trim_end_matches('/')),
                idp.issuer().trim_end_matches('/').to_owned(),
            ),
        };
        let service = service(&url, &prefix, builder).await;
        let mut events = service.subscribe();
        assert_eq!(idp.jwks_requests(), 1, "{config}");
        idp.rotate(TestKey::ec_p256("key-2"));
        let (code, out, err) = refresh(&url, &prefix, &["--issuer", &asked_for]).await;
        assert_eq!(code, 0, "{config}: {out}{err}");
        assert!(
            out.starts_with("fetched") && out.contains("key-2"),
            "{config}: {out}"
        );
        assert_eq!(hears_of(&mut events, "key-2").await, ["key-1"], "{config}");
        assert_eq!(idp.jwks_requests(), 2, "{config}");
    }
    assert_eq!(backup.jwks_requests(), 0);
}

/// An issuer no verifier announced, or one that names two entries, is refused with exit 2 and
/// the directory's contents; `--entry` names one of two, `--all` both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_or_ambiguous_issuer_is_refused_and_an_entry_can_be_named() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (url, prefix) = (redis.url(), prefix());
    let idp = Idp::start().await.unwrap();
    let pinned = jwks(&[&TestKey::ed25519("pinned")]).to_string();
    let plain = service(&url, &prefix, idp.verifier_builder()).await;
    let with_pins = service(&url, &prefix, idp.verifier_builder().pinned_keys(&pinned)).await;
    assert_eq!(idp.jwks_requests(), 2);

    let (code, _, err) = refresh(&url, &prefix, &["--issuer", "https://nobody.test/"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("no verifier of the fleet announced an entry for issuer https://nobody.test/"),
        "{err}"
    );
    assert!(err.contains(idp.issuer()), "the directory is listed: {err}");

    let (code, _, err) = refresh(&url, &prefix, &["--issuer", idp.issuer()]).await;
    assert_eq!(code, 2);
    assert!(err.contains("names 2 entries"), "{err}");
    assert_eq!(idp.jwks_requests(), 2, "an ambiguous issuer fetched");

    let (code, listed, _) = refresh(&url, &prefix, &["--list"]).await;
    assert_eq!(code, 0);
    let entries: Vec<&str> = listed
        .lines()
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{listed}");
    let pinned_entry = listed
        .lines()
        .find(|line| line.contains("pinned"))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("{listed}"));

    idp.rotate(TestKey::ec_p256("key-2"));
    let (mut plain_events, mut pinned_events) = (plain.subscribe(), with_pins.subscribe());
    let (code, out, err) = refresh(&url, &prefix, &["--entry", pinned_entry]).await;
    assert_eq!(code, 0, "{out}{err}");
    hears_of(&mut pinned_events, "key-2").await;
    assert_eq!(idp.jwks_requests(), 3);
    assert!(
        !plain.key_set().await.unwrap().contains_kid("key-2"),
        "the other entry was refreshed"
    );

    // --all: the plain entry fetches; the pinned one was refreshed within the interval.
    let (code, out, err) = refresh(&url, &prefix, &["--issuer", idp.issuer(), "--all"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("already refreshed within the interval"),
        "{out}"
    );
    hears_of(&mut plain_events, "key-2").await;
    assert_eq!(idp.jwks_requests(), 4);
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
