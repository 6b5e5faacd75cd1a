//! A small axum service with a protected route, against the embedded identity provider.
//!
//! ```sh
//! cargo run --example axum_service --features axum,testkit            # a demonstration, then exit
//! cargo run --example axum_service --features axum,testkit -- --serve # keep serving; prints a token
//! ```

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use jwkstash::events::KeyHealth;
use jwkstash::testkit::Idp;
use jwkstash::{Claims, JwtLayer, Verifier};
use serde::Deserialize;

#[derive(Clone, Deserialize)]
struct User {
    sub: String,
}

async fn me(Claims(user): Claims<User>) -> String {
    format!("hello {}\n", user.sub)
}

/// Readiness: ready while the keys are fresh or stale (tokens still verify through a provider
/// outage), not ready when no usable set is left. Read from memory, no request to the provider.
async fn ready(State(verifier): State<Verifier>) -> (StatusCode, String) {
    match verifier.health() {
        KeyHealth::Fresh { .. } => (StatusCode::OK, "ready: keys fresh\n".into()),
        KeyHealth::Stale { until, .. } => (
            StatusCode::OK,
            format!("ready: keys stale, usable until {until:?}\n"),
        ),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {other:?}\n"),
        ),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = Idp::start().await?;
    let verifier = idp.verifier_builder().build()?;
    verifier.prefetch().await?;
    let app = Router::new()
        .route("/me", get(me))
        .layer(JwtLayer::<User>::new(verifier.clone()).realm("demo"))
        .route("/ready", get(ready).with_state(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let token = idp.mint();

    if std::env::args().any(|arg| arg == "--serve") {
        println!("serving {base}; try:\n  curl -H 'Authorization: Bearer {token}' {base}/me");
        server.await??;
        return Ok(());
    }

    let client = reqwest::Client::new();
    let readiness = client.get(format!("{base}/ready")).send().await?;
    println!(
        "{:<20} -> {} {}",
        "readiness",
        readiness.status(),
        readiness.text().await?.trim()
    );
    for (what, authorization) in [
        ("a valid token", Some(format!("Bearer {token}"))),
        ("no token", None),
        (
            "a forged token",
            Some(format!(
                "Bearer {}.{}.c2ln",
                token.split('.').next().unwrap_or(""),
                "e30"
            )),
        ),
        ("a malformed header", Some(format!("Bearer  {token}"))),
    ] {
        let mut request = client.get(format!("{base}/me"));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await?;
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        println!(
            "{what:<20} -> {} {:<30} {}",
            response.status(),
            challenge,
            response.text().await?.trim()
        );
    }
    Ok(())
}
