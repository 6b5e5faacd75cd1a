//! The layer and the extractor over real HTTP on 127.0.0.1: an axum service behind
//! `JwtLayer`, driven with reqwest, against the embedded identity provider.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jwkstash_core::ManualClock;
use jwkstash_jwks::testkit::{Behaviour, Idp, IdpBuilder, TestKey};
use jwkstash_jwks::{FreshnessPolicy, Issuers, Verifier};
use jwkstash_tower::{Claims, JwtLayer};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};

async fn me(Claims(claims): Claims<Value>) -> axum::Json<Value> {
    axum::Json(json!({ "sub": claims["sub"] }))
}

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn protected(verifier: Verifier) -> Router {
    Router::new()
        .route("/me", get(me))
        .layer(JwtLayer::<Value>::new(verifier).realm("jwkstash-test"))
        // A route outside the layer that still asks for claims.
        .route("/unguarded", get(me))
}

async fn get_with(url: &str, authorization: &[&str]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    for value in authorization {
        request = request.header(AUTHORIZATION, *value);
    }
    request.send().await.unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn answers_as_rfc_6750_says() {
    let clock = ManualClock::default();
    let idp = IdpBuilder::default()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    let verifier = idp
        .verifier_builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let base = serve(protected(verifier)).await;
    let me = format!("{base}/me");
    let token = idp.mint();

    let ok = get_with(&me, &[&format!("Bearer {token}")]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(body["sub"], "user-1");
    let lower = get_with(&me, &[&format!("bearer {token}")]).await;
    assert_eq!(lower.status(), StatusCode::OK);

    let missing = get_with(&me, &[]).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&missing), "Bearer realm=\"jwkstash-test\"");
    let basic = get_with(&me, &["Basic dXNlcjpwYXNz"]).await;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert!(!challenge(&basic).contains("error"));

    for malformed in [
        format!("Bearer  {token}"),
        format!("Bearer {token} x"),
        "Bearer t@ken".to_owned(),
        "Bearer".to_owned(),
    ] {
        let response = get_with(&me, &[&malformed]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{malformed}");
        assert!(challenge(&response).contains("error=\"invalid_request\""));
    }
    let twice = get_with(
        &me,
        &[&format!("Bearer {token}"), &format!("Bearer {token}")],
    )
    .await;
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);

    let forged = TestKey::rsa("key-1").sign(&idp.claims());
    let expired = idp.mint_with(json!({ "exp": 1 }));
    for invalid in [forged, expired, "a.b.c".to_owned()] {
        let response = get_with(&me, &[&format!("Bearer {invalid}")]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(challenge(&response).contains("error=\"invalid_token\""));
        // No detail that helps an attacker.
        assert!(!challenge(&response).contains("error_description"));
        assert!(response.text().await.unwrap().is_empty());
    }

    // The extractor without the layer refuses with 401.
    let unguarded = get_with(&format!("{base}/unguarded"), &[&format!("Bearer {token}")]).await;
    assert_eq!(unguarded.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn our_outage_is_503_with_retry_after_never_401() {
    let clock = ManualClock::default();
    let idp = IdpBuilder::default()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    idp.set_behaviour(Behaviour::Status(503));
    let verifier = idp
        .verifier_builder()
        .clock(Arc::new(clock.clone()))
        .policy(FreshnessPolicy::default())
        .build()
        .unwrap();
    let base = serve(protected(verifier)).await;
    let response = get_with(&format!("{base}/me"), &[&format!("Bearer {}", idp.mint())]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    // The provider comes back: the same token verifies after the backoff.
    idp.set_behaviour(Behaviour::Serve);
    clock.advance(Duration::from_secs(retry + 1));
    let response = get_with(&format!("{base}/me"), &[&format!("Bearer {}", idp.mint())]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_registry_of_issuers_behind_one_layer() {
    let (a, b) = (Idp::start().await.unwrap(), Idp::start().await.unwrap());
    let issuers = Issuers::new();
    issuers.insert(a.verifier_builder().build().unwrap());
    issuers.insert(b.verifier_builder().build().unwrap());
    let router = Router::new()
        .route("/me", get(me))
        .layer(JwtLayer::<Value, Issuers>::new(issuers));
    let base = serve(router).await;
    for idp in [&a, &b] {
        let response = get_with(&format!("{base}/me"), &[&format!("Bearer {}", idp.mint())]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let stranger = Idp::start().await.unwrap();
    let response = get_with(
        &format!("{base}/me"),
        &[&format!("Bearer {}", stranger.mint())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stranger.jwks_requests(), 0);
}

#[tokio::test]
async fn a_registry_with_an_issuer_template_behind_one_layer() {
    const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    let idp = Idp::start().await.unwrap();
    let issuers = Issuers::new();
    issuers.insert(
        idp.verifier_builder()
            .issuer_template(jwkstash_jwks::IssuerTemplate::new(ENTRA, "tid").unwrap())
            .build()
            .unwrap(),
    );
    let router = Router::new()
        .route("/me", get(me))
        .layer(JwtLayer::<Value, Issuers>::new(issuers));
    let base = serve(router).await;
    let token = |iss: String, tid: &str| idp.mint_with(json!({ "iss": iss, "tid": tid }));
    for tid in ["tenant-a", "tenant-b", "tenant-c"] {
        let iss = ENTRA.replace("{tenantid}", tid);
        let response = get_with(
            &format!("{base}/me"),
            &[&format!("Bearer {}", token(iss, tid))],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{tid}");
    }
    // Tenant A's issuer with tenant B's id: 401 with the reason in the challenge.
    let mixed = token(ENTRA.replace("{tenantid}", "tenant-a"), "tenant-b");
    let response = get_with(&format!("{base}/me"), &[&format!("Bearer {mixed}")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(idp.jwks_requests(), 1, "one fetch for every tenant");
}
