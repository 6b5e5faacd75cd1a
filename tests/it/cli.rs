//! The `jwkstash` command end to end against a local identity provider.
#![allow(clippy::unwrap_used)]

use jwkstash::testkit::{Idp, TestKey, b64};
use serde_json::json;
use tokio::process::Command;

async fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jwkstash"))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_lists_usable_and_refused_keys_by_discovery_or_jwks_url() {
    let idp = Idp::start().await.unwrap();
    idp.publish(TestKey::ec_p256("ec-key"));
    let (code, out, _) = run(&["keys", "--allow-http", idp.issuer()]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("key-1") && out.contains("RSA-2048") && out.contains("RS256"),
        "{out}"
    );
    assert!(out.contains("ec-key") && out.contains("EC P-256"), "{out}");
    assert_eq!(idp.discovery_requests(), 1);

    let (code, out, _) = run(&["keys", "--allow-http", &idp.jwks_url()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 usable, 0 refused"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_says_why_a_key_is_refused() {
    let idp = Idp::start().await.unwrap();
    let mut small = vec![0xffu8; 128];
    small[0] = 0xc0;
    idp.set_behaviour(jwkstash::testkit::Behaviour::Body {
        content_type: "application/json",
        body: json!({ "keys": [
            { "kty": "RSA", "kid": "tiny", "n": b64(&small), "e": "AQAB" },
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
        ]})
        .to_string(),
    });
    let (code, out, err) = run(&["keys", "--allow-http", "--jwks", &idp.jwks_url()]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("tiny") && out.contains("RSA modulus size out of range"),
        "{out}"
    );
    assert!(
        out.contains("hmac") && out.contains("symmetric (oct) key"),
        "{out}"
    );
    assert!(err.contains("no usable key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_prints_claims_or_the_exact_reason() {
    let idp = Idp::start().await.unwrap();
    let args = |token: &str| {
        vec![
            "verify".to_owned(),
            "--allow-http".to_owned(),
            "--issuer".to_owned(),
            idp.issuer().to_owned(),
            "--aud".to_owned(),
            idp.audience().to_owned(),
            token.to_owned(),
        ]
    };
    let run_with = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs).await
    };
    let (code, out, _) = run_with(args(&idp.mint())).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("valid") && out.contains("\"sub\": \"user-1\""),
        "{out}"
    );

    let expired = idp.mint_with(json!({ "exp": 1 }));
    let (code, _, err) = run_with(args(&expired)).await;
    assert_eq!(code, 1);
    assert!(err.contains("token expired (expired)"), "{err}");

    let other_audience = idp.mint_with(json!({ "aud": "someone-else" }));
    let (code, _, err) = run_with(args(&other_audience)).await;
    assert_eq!(code, 1);
    assert!(err.contains("invalid_audience"), "{err}");

    let forged = TestKey::rsa("key-1").sign(&idp.claims());
    let (code, _, err) = run_with(args(&forged)).await;
    assert_eq!(code, 1);
    assert!(err.contains("bad_signature"), "{err}");

    // A provider that is down: keys unavailable, exit code 2, with the cause.
    idp.set_behaviour(jwkstash::testkit::Behaviour::Status(500));
    let (code, _, err) = run_with(args(&idp.mint())).await;
    assert_eq!(code, 2);
    assert!(err.contains("unavailable") && err.contains("500"), "{err}");
}
