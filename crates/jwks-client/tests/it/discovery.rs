//! OpenID Connect discovery against a local provider: the issuer must match byte for byte, the
//! document is kept for its own TTL, and a moved JWKS is discovered again.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use jwkstash_core::{FetchError, ManualClock};
use jwkstash_jwks::testkit::{Behaviour, Idp, IdpBuilder, eventually};
use jwkstash_jwks::{DiscoverySource, RefreshError, Verifier, VerifyError};
use serde_json::Value;

fn verifier(idp: &Idp, issuer: &str, clock: &ManualClock) -> Verifier {
    let source = DiscoverySource::builder(issuer)
        .allow_http(true)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    Verifier::builder()
        .key_source(source)
        .issuer(issuer)
        .audience(idp.audience())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn discovery_error(error: VerifyError) -> String {
    match error {
        VerifyError::KeysUnavailable(unavailable) => match unavailable.cause() {
            RefreshError::Fetch(FetchError::Discovery(reason)) => reason.clone(),
            other => panic!("expected a discovery error, got {other:?}"),
        },
        other => panic!("expected keys unavailable, got {other:?}"),
    }
}

async fn idp(clock: &ManualClock) -> Idp {
    IdpBuilder::default()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn discovers_the_jwks_once_per_discovery_ttl() {
    let clock = ManualClock::default();
    let idp = idp(&clock).await;
    let verifier = verifier(&idp, idp.issuer(), &clock);
    for _ in 0..5 {
        verifier.verify::<Value>(&idp.mint()).await.unwrap();
    }
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
    // The key set expires after 10 minutes; the discovery document after a day.
    clock.advance(Duration::from_secs(11 * 60));
    // Served stale at once, refreshed in the background.
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    eventually("the set was refreshed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 2));
    clock.advance(Duration::from_secs(24 * 3600));
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    assert_eq!(idp.discovery_requests(), 2);
}

#[tokio::test]
async fn an_issuer_mismatch_is_refused_before_any_jwks_request() {
    let clock = ManualClock::default();
    let idp = idp(&clock).await;
    for (claimed, configured) in [
        (
            Some(format!("{}/tenant", idp.issuer())),
            idp.issuer().to_owned(),
        ),
        (
            Some("https://evil.example".to_owned()),
            idp.issuer().to_owned(),
        ),
        // Byte for byte: a trailing slash is another issuer.
        (None, format!("{}/", idp.issuer())),
    ] {
        idp.set_discovery(claimed, None);
        let verifier = verifier(&idp, &configured, &clock);
        let error = verifier.verify::<Value>(&idp.mint()).await.unwrap_err();
        assert!(discovery_error(error).contains("issuer"));
    }
    assert_eq!(idp.jwks_requests(), 0);
}

#[tokio::test]
async fn a_jwks_uri_of_another_scheme_is_refused() {
    let clock = ManualClock::default();
    let idp = idp(&clock).await;
    for uri in ["file:///etc/passwd", "ftp://127.0.0.1/jwks", "not a url"] {
        idp.set_discovery(None, Some(uri.to_owned()));
        let verifier = verifier(&idp, idp.issuer(), &clock);
        let error = verifier.verify::<Value>(&idp.mint()).await.unwrap_err();
        assert!(discovery_error(error).contains("jwks_uri"), "{uri}");
    }
    assert_eq!(idp.jwks_requests(), 0);
    // Without allow_http, an http issuer is refused when the verifier is built.
    assert!(DiscoverySource::builder(idp.issuer()).build().is_err());
}

#[tokio::test]
async fn a_jwks_uri_on_another_host_is_followed_when_the_document_names_it() {
    // Providers such as Google publish keys on another host than the issuer.
    let clock = ManualClock::default();
    let issuer = idp(&clock).await;
    let keys_host = IdpBuilder::default()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    issuer.set_discovery(None, Some(keys_host.jwks_url()));
    let verifier = Verifier::builder()
        .key_source(
            DiscoverySource::builder(issuer.issuer())
                .allow_http(true)
                .build()
                .unwrap(),
        )
        .issuer(issuer.issuer())
        .audience(keys_host.audience())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    // The token is signed by the keys host's key, with the issuer's iss.
    let token = keys_host.mint_with(serde_json::json!({ "iss": issuer.issuer() }));
    verifier.verify::<Value>(&token).await.unwrap();
    assert_eq!((issuer.jwks_requests(), keys_host.jwks_requests()), (0, 1));
}

#[tokio::test]
async fn a_moved_jwks_is_discovered_again() {
    let clock = ManualClock::default();
    let idp = idp(&clock).await;
    let verifier = verifier(&idp, idp.issuer(), &clock);
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    idp.set_behaviour(Behaviour::Status(404));
    clock.advance(Duration::from_secs(11 * 60));
    // The stale set still serves; the 404 makes the next fetch start from discovery.
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    eventually("the refresh failed", || {
        verifier.stats().fetch_failures == 1
    })
    .await;
    idp.set_behaviour(Behaviour::Serve);
    clock.advance(Duration::from_secs(60));
    verifier.verify::<Value>(&idp.mint()).await.unwrap();
    eventually("discovered again", || idp.discovery_requests() == 2).await;
    eventually("the set was refreshed", || {
        verifier.stats().fetch_successes == 2
    })
    .await;
}
