//! Multi-tenant applications: issuers by template over one key set (an embedded provider that
//! mimics Entra ID's `common` JWKS, whose keys carry an `issuer` template), and issuers
//! resolved on first sight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::common::{TENANT_AUDIENCE, tenant, tenant_token};
use jwkstash_jwks::testkit::{Behaviour, Idp, TestKey};
use jwkstash_jwks::{
    InvalidToken, IssuerTemplate, Issuers, Verifier, VerifierBuilder, VerifyError,
};
use serde_json::{Value, json};

const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const AUDIENCE: &str = TENANT_AUDIENCE;

fn issuer_of(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

fn token(key: &TestKey, iss: &str, tid: &str) -> String {
    tenant_token(key, iss, tid)
}

/// A provider serving Entra-like keys: each JWK has an `issuer` member (`bound`, or the
/// `{tenantid}` template).
async fn entra(keys: &[(&TestKey, Option<&str>)]) -> Idp {
    let idp = Idp::start().await.unwrap();
    let jwks: Vec<Value> = keys
        .iter()
        .map(|(key, bound)| {
            let mut jwk = key.public_jwk();
            jwk["issuer"] = json!(bound.unwrap_or(ENTRA));
            jwk
        })
        .collect();
    idp.set_behaviour(Behaviour::Body {
        content_type: "application/json",
        body: json!({ "keys": jwks }).to_string(),
    });
    idp
}

fn common_verifier(idp: &Idp, template: IssuerTemplate) -> Verifier {
    Verifier::builder()
        .key_source(idp.key_source())
        .issuer_template(template)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn refused(outcome: Result<Value, VerifyError>, expected: &InvalidToken) {
    match outcome {
        Err(VerifyError::InvalidToken(reason)) if &reason == expected => {}
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tenants_share_one_key_set_and_one_fetch() {
    let key = TestKey::rsa("common-1");
    let idp = entra(&[(&key, None)]).await;
    let issuers = Issuers::new();
    issuers.insert(common_verifier(
        &idp,
        IssuerTemplate::new(ENTRA, "tid").unwrap(),
    ));
    let tasks: Vec<_> = (0..1000)
        .map(|n| {
            let (issuers, token) = (
                issuers.clone(),
                token(&key, &issuer_of(&tenant(n)), &tenant(n)),
            );
            tokio::spawn(async move { issuers.verify::<Value>(&token).await })
        })
        .collect();
    for task in tasks {
        let claims = task.await.unwrap().unwrap();
        assert!(claims["tid"].as_str().unwrap().starts_with("0000000a-"));
    }
    assert_eq!(idp.jwks_requests(), 1);
    assert_eq!(issuers.len(), 1, "one verifier for every tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_in_iss_must_be_the_tokens_tid() {
    let key = TestKey::ec_p256("common-1");
    let idp = entra(&[(&key, None)]).await;
    let verifier = common_verifier(&idp, IssuerTemplate::new(ENTRA, "tid").unwrap());
    let (a, b) = (tenant(1), tenant(2));
    verifier
        .verify::<Value>(&token(&key, &issuer_of(&a), &a))
        .await
        .unwrap();
    refused(
        verifier.verify(&token(&key, &issuer_of(&a), &b)).await,
        &InvalidToken::TenantMismatch,
    );
    // No tid at all, a tid of another JSON type, or one that differs in case.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for tid in [json!(null), json!(1), json!(a.to_uppercase())] {
        let mut claims = json!({ "iss": issuer_of(&a), "aud": AUDIENCE, "exp": now + 60 });
        if !tid.is_null() {
            claims["tid"] = tid;
        }
        refused(
            verifier.verify(&key.sign(&claims)).await,
            &InvalidToken::TenantMismatch,
        );
    }
    // Not the template's shape: not this verifier's issuer.
    for iss in [
        "https://login.microsoftonline.com/a/b/v2.0".to_owned(),
        "https://login.microsoftonline.com//v2.0".to_owned(),
        "https://evil.example.com/00000000/v2.0".to_owned(),
    ] {
        refused(
            verifier.verify(&token(&key, &iss, "a/b")).await,
            &InvalidToken::InvalidIssuer,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bound_to_another_issuer_is_refused() {
    let (common, single) = (TestKey::ec_p256("common-1"), TestKey::ec_p256("single-1"));
    let only = tenant(7);
    let idp = entra(&[(&common, None), (&single, Some(&issuer_of(&only)))]).await;
    let verifier = common_verifier(&idp, IssuerTemplate::new(ENTRA, "tid").unwrap());
    // The single-tenant key verifies its tenant's tokens only.
    verifier
        .verify::<Value>(&token(&single, &issuer_of(&only), &only))
        .await
        .unwrap();
    let other = tenant(8);
    refused(
        verifier
            .verify(&token(&single, &issuer_of(&other), &other))
            .await,
        &InvalidToken::KeyNotForIssuer,
    );
    verifier
        .verify::<Value>(&token(&common, &issuer_of(&other), &other))
        .await
        .unwrap();
    assert_eq!(idp.jwks_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_issuer_is_not_a_string_is_skipped_not_unbound() {
    let (single, common) = (TestKey::ec_p256("single-1"), TestKey::rsa("common-1"));
    let only = tenant(7);
    let other = tenant(8);
    for issuer in [
        json!(null),
        json!(42),
        json!(""),
        json!([issuer_of(&only)]),
        json!({ "iss": issuer_of(&only) }),
    ] {
        let mut bad = single.public_jwk();
        bad["issuer"] = issuer.clone();
        let mut good = common.public_jwk();
        good["issuer"] = json!(ENTRA);
        let document = json!({ "keys": [bad, good] }).to_string();
        let (_, skipped) = jwkstash_jwks::KeySet::explain(document.as_bytes()).unwrap();
        assert_eq!(
            skipped
                .iter()
                .map(|skip| (skip.kid.as_deref(), skip.reason))
                .collect::<Vec<_>>(),
            [(Some("single-1"), jwkstash_jwks::SkipReason::Malformed)],
            "issuer {issuer}"
        );
        let verifier = || {
            Verifier::builder()
                .key_source(jwkstash_jwks::testkit::StaticSource::new(document.clone()))
                .issuer_template(IssuerTemplate::new(ENTRA, "tid").unwrap())
                .audience(AUDIENCE)
                .build()
                .unwrap()
        };
        // The key is gone from the set: neither its tenant's token nor another's verifies
        // (each on a verifier of its own, whose one unknown-kid refetch finds it absent).
        for tid in [&only, &other] {
            refused(
                verifier()
                    .verify(&token(&single, &issuer_of(tid), tid))
                    .await,
                &InvalidToken::UnknownKid,
            );
        }
        verifier()
            .verify::<Value>(&token(&common, &issuer_of(&other), &other))
            .await
            .unwrap();
    }
}

/// Only `sub`: the caller's type reads no other claim, so only the verifier sees `tid`.
#[derive(Debug, serde::Deserialize)]
struct OnlySub {
    #[allow(dead_code)]
    sub: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templates_claim_is_checked_when_iss_matches_exactly_too() {
    let (common, plain) = (TestKey::ec_p256("common-1"), TestKey::ed25519("plain-1"));
    let mut bound = common.public_jwk();
    bound["issuer"] = json!(ENTRA);
    let document = json!({ "keys": [bound, plain.public_jwk()] }).to_string();
    let (listed, allowed, other) = (tenant(1), tenant(2), tenant(3));
    let own = "https://idp.test/";
    // Two issuers of ours (one in the template's shape, one not) and a template for another.
    let verifier = Verifier::builder()
        .key_source(jwkstash_jwks::testkit::StaticSource::new(document))
        .issuer(issuer_of(&listed))
        .issuer(own)
        .issuer_template(
            IssuerTemplate::new(ENTRA, "tid")
                .unwrap()
                .allow([allowed.clone()]),
        )
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A genuine token of `key` whose payload has `tid` as this raw JSON text (or none).
    let signed = |key: &TestKey, iss: &str, tid: Option<&str>| {
        let header = json!({ "alg": key.alg(), "kid": key.kid() }).to_string();
        let tid = tid.map_or(String::new(), |tid| format!(r#","tid":{tid}"#));
        let payload = format!(
            r#"{{"iss":"{iss}","aud":"{AUDIENCE}","sub":"user","exp":{}{tid}}}"#,
            now + 600
        );
        key.sign_raw(header.as_bytes(), payload.as_bytes())
    };
    let outcome = |token: String| {
        let verifier = verifier.clone();
        async move {
            match verifier.verify::<OnlySub>(&token).await {
                Ok(_) => Ok(()),
                Err(VerifyError::InvalidToken(reason)) => Err(reason),
                Err(other) => panic!("keys unavailable: {other:?}"),
            }
        }
    };
    let quoted = |tenant: &str| format!("\"{tenant}\"");
    // The listed issuer names its tenant: a tid there must be that tenant (or be absent).
    let listed_iss = issuer_of(&listed);
    assert_eq!(
        outcome(signed(&common, &listed_iss, Some(&quoted(&listed)))).await,
        Ok(())
    );
    assert_eq!(outcome(signed(&common, &listed_iss, None)).await, Ok(()));
    for tid in [
        quoted(&other),
        quoted(&listed.to_uppercase()),
        "7".into(),
        "null".into(),
    ] {
        assert_eq!(
            outcome(signed(&common, &listed_iss, Some(&tid))).await,
            Err(InvalidToken::TenantMismatch),
            "{tid}"
        );
    }
    // Through the template, as before.
    let allowed_iss = issuer_of(&allowed);
    assert_eq!(
        outcome(signed(&common, &allowed_iss, Some(&quoted(&allowed)))).await,
        Ok(())
    );
    assert_eq!(
        outcome(signed(&common, &allowed_iss, Some(&quoted(&listed)))).await,
        Err(InvalidToken::TenantMismatch)
    );
    // Outside the template's shape the claim names no tenant: any valid JSON.
    assert_eq!(outcome(signed(&plain, own, Some("7"))).await, Ok(()));
    // A malformed tid is malformed whichever way iss is accepted, though `OnlySub` never
    // reads it.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    for tid in [r#""\ud800""#, "1e999", &deep, r#"{"a":1,"a":2}"#] {
        for (key, iss) in [
            (&common, &*listed_iss),
            (&common, &*allowed_iss),
            (&plain, own),
        ] {
            assert!(
                matches!(
                    outcome(signed(key, iss, Some(tid))).await,
                    Err(InvalidToken::Malformed(_))
                ),
                "{iss}: {tid}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_tenants_are_served_and_others_cost_no_request() {
    let key = TestKey::ec_p256("common-1");
    let idp = entra(&[(&key, None)]).await;
    let allowed = IssuerTemplate::new(ENTRA, "tid")
        .unwrap()
        .allow([tenant(1), tenant(2)]);
    let issuers = Issuers::new();
    issuers.insert(common_verifier(&idp, allowed));
    for n in 10..60 {
        refused(
            issuers
                .verify(&token(&key, &issuer_of(&tenant(n)), &tenant(n)))
                .await,
            &InvalidToken::UnknownIssuer,
        );
    }
    refused(
        issuers
            .verify(&token(&key, "https://other.example.com/", "x"))
            .await,
        &InvalidToken::UnknownIssuer,
    );
    assert_eq!(idp.jwks_requests(), 0, "an unknown issuer cost a request");
    issuers
        .verify::<Value>(&token(&key, &issuer_of(&tenant(1)), &tenant(1)))
        .await
        .unwrap();
    assert_eq!(idp.jwks_requests(), 1);
    // With a predicate instead of a list.
    let predicate = IssuerTemplate::new(ENTRA, "tid")
        .unwrap()
        .allow_if(|tid| tid.ends_with('2'));
    let verifier = common_verifier(&idp, predicate);
    verifier
        .verify::<Value>(&token(&key, &issuer_of(&tenant(2)), &tenant(2)))
        .await
        .unwrap();
    refused(
        verifier
            .verify(&token(&key, &issuer_of(&tenant(3)), &tenant(3)))
            .await,
        &InvalidToken::InvalidIssuer,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_are_resolved_once_on_first_sight_and_refusals_are_remembered() {
    let idp = Idp::start().await.unwrap();
    let (asked, jwks_url) = (Arc::new(AtomicUsize::new(0)), idp.jwks_url());
    let known = idp.issuer().to_owned();
    let counted = Arc::clone(&asked);
    let issuers = Issuers::new()
        .resolver(move |issuer: &str, builder: VerifierBuilder| {
            counted.fetch_add(1, Ordering::SeqCst);
            (issuer == known).then(|| {
                builder
                    .key_source(
                        jwkstash_jwks::HttpKeySource::builder(jwks_url.as_str())
                            .allow_http(true)
                            .build()
                            .unwrap(),
                    )
                    .audience("jwkstash-demo")
            })
        })
        .resolver_limits(100, Duration::from_secs(3600), 50, Duration::from_secs(300));

    // 100 concurrent first tokens of the new issuer: one question, one fetch.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (issuers, token) = (issuers.clone(), idp.mint());
            tokio::spawn(async move { issuers.verify::<Value>(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!((asked.load(Ordering::SeqCst), idp.jwks_requests()), (1, 1));

    // A refused issuer is asked about once, then remembered.
    let key = TestKey::ec_p256("k");
    let stranger = token(&key, "https://stranger.example.com/", "t");
    for _ in 0..10 {
        refused(
            issuers.verify(&stranger).await,
            &InvalidToken::UnknownIssuer,
        );
    }
    assert_eq!(asked.load(Ordering::SeqCst), 2);

    // 1,000 random issuers: refused without a request, remembered within the bound (a flood
    // beyond it is asked about again, never stored beyond it).
    for n in 0..1000 {
        let iss = format!("https://random-{n}.example.com/");
        refused(
            issuers.verify(&token(&key, &iss, "t")).await,
            &InvalidToken::UnknownIssuer,
        );
    }
    assert_eq!(idp.jwks_requests(), 1);
    let remembered = issuers.refused_count();
    assert!(
        (1..=50).contains(&remembered),
        "{remembered} refusals kept, bound 50"
    );
    let asked_before = asked.load(Ordering::SeqCst);
    // Too long an issuer is refused before the resolver.
    let long = format!("https://{}.example.com/", "a".repeat(600));
    refused(
        issuers.verify(&token(&key, &long, "t")).await,
        &InvalidToken::UnknownIssuer,
    );
    assert_eq!(asked.load(Ordering::SeqCst), asked_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_issuers_are_bounded_by_evicting_old_ones() {
    let idps = futures_util::future::join_all((0..30).map(|_| Idp::start())).await;
    let idps: Vec<Idp> = idps.into_iter().map(Result::unwrap).collect();
    let by_issuer: std::collections::HashMap<String, String> = idps
        .iter()
        .map(|idp| (idp.issuer().to_owned(), idp.jwks_url()))
        .collect();
    let issuers = Issuers::new()
        .resolver(move |issuer: &str, builder: VerifierBuilder| {
            let url = by_issuer.get(issuer)?;
            let source = jwkstash_jwks::HttpKeySource::builder(url.as_str())
                .allow_http(true)
                .build()
                .ok()?;
            Some(builder.key_source(source).audience("jwkstash-demo"))
        })
        .resolver_limits(10, Duration::from_secs(3600), 10, Duration::from_secs(300));
    for idp in &idps {
        issuers.verify::<Value>(&idp.mint()).await.unwrap();
    }
    let live = issuers.len();
    assert!(
        (1..=10).contains(&live),
        "{live} resolved issuers kept, bound 10"
    );
}
