//! What one more tenant costs in memory: measured with a counting allocator, for tenants that
//! share one key set through an issuer template (goal: under 1 KiB each) and, for comparison,
//! for issuers resolved on first sight (one verifier each). Run with `--nocapture` to see the
//! figures written in BENCHMARKS.md. Also: what adding one more issuer to a registry
//! allocates, which must not grow with the registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "alloc/mod.rs"]
mod alloc;
#[path = "it/common/mod.rs"]
mod common;

use alloc::{SERIAL, allocated_by, live};

use common::{tenant, tenant_token as token};
use jwkstash_jwks::testkit::{TestKey, jwks};
use jwkstash_jwks::{IssuerTemplate, Issuers, StaticKeySource, Verifier, VerifierBuilder};
use serde_json::Value;

const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const TENANTS: usize = 1000;

#[tokio::test(flavor = "current_thread")]
async fn one_more_tenant_of_a_shared_key_set_costs_under_one_kib() {
    let _measuring = SERIAL.lock().await;
    let key = TestKey::ec_p256("common");
    let source = StaticKeySource::from_json(jwks(&[&key]).to_string()).unwrap();
    let tenants: Vec<String> = (0..=TENANTS).map(tenant).collect();

    let before_list = live();
    let template = IssuerTemplate::new(ENTRA, "tid")
        .unwrap()
        .allow(tenants.clone());
    let allow_list = (live() - before_list) / TENANTS as isize;

    let issuers = Issuers::new();
    issuers.insert(
        Verifier::builder()
            .key_source(source)
            .issuer_template(template)
            .audience(common::TENANT_AUDIENCE)
            .build()
            .unwrap(),
    );
    let tokens: Vec<String> = tenants
        .iter()
        .map(|tid| token(&key, &ENTRA.replace("{tenantid}", tid), tid))
        .collect();
    // Warm: the key set is loaded by the first tenant.
    issuers.verify::<Value>(&tokens[0]).await.unwrap();

    let before = live();
    for token in &tokens[1..] {
        issuers.verify::<Value>(token).await.unwrap();
    }
    let per_tenant = (live() - before) / TENANTS as isize;
    eprintln!(
        "per additional tenant of one shared set: {per_tenant} B verified, \
         plus {allow_list} B in an allow-list"
    );
    assert!(per_tenant < 1024, "{per_tenant} B per tenant");
    assert!(
        (0..1024).contains(&allow_list),
        "{allow_list} B per allowed tenant"
    );

    // For comparison: issuers resolved on first sight, one verifier (and one set) each.
    // Each with a set of its own (the same key here, published by each issuer's source).
    let published = jwks(&[&key]).to_string();
    let resolved = Issuers::new().resolver(move |_: &str, builder: VerifierBuilder| {
        let source = StaticKeySource::from_json(published.clone()).ok()?;
        Some(builder.key_source(source).audience(common::TENANT_AUDIENCE))
    });
    let strangers: Vec<String> = (0..100)
        .map(|n| token(&key, &format!("https://tenant-{n}.example.com/"), "t"))
        .collect();
    let before = live();
    for token in &strangers {
        resolved.verify::<Value>(token).await.unwrap();
    }
    let per_issuer = (live() - before) / 100;
    eprintln!("per issuer resolved on first sight (own verifier and set): {per_issuer} B");
    assert_eq!(resolved.len(), 100);
}

/// Loading n issuers into a registry costs O(n log n), not O(n^2): the bytes one `insert`
/// (and one `remove`) allocates are about the same at 100 issuers and at 10,000, where a
/// registry that copied its whole map on every change allocated a hundred times more.
#[test]
fn adding_the_ten_thousandth_issuer_allocates_about_what_the_hundredth_did() {
    const ISSUERS: usize = 10_000;
    let _measuring = SERIAL.blocking_lock();
    let key = TestKey::ec_p256("k1");
    let source = StaticKeySource::from_json(jwks(&[&key]).to_string()).unwrap();
    let clock: jwkstash_core::SharedClock = std::sync::Arc::new(jwkstash_core::SystemClock);
    let near = jwkstash_memory::MemoryCache::builder().clock(clock).build();
    let issuers = Issuers::with_near_tier(std::sync::Arc::new(near));
    let verifiers: Vec<Verifier> = (0..ISSUERS)
        .map(|n| {
            issuers
                .verifier_builder()
                .key_source(source.clone())
                .issuer(format!("https://tenant-{n}.example.com/"))
                .audience("api")
                .build()
                .unwrap()
        })
        .collect();
    let mut cost = std::collections::BTreeMap::new();
    for (n, verifier) in verifiers.into_iter().enumerate() {
        let bytes = allocated_by(|| issuers.insert(verifier));
        if [99, ISSUERS - 1].contains(&n) {
            cost.insert(n + 1, bytes);
        }
    }
    assert_eq!(issuers.len(), ISSUERS);
    let (small, large) = (cost[&100], cost[&ISSUERS]);
    let removed = allocated_by(|| {
        issuers.remove("https://tenant-5000.example.com/").unwrap();
    });
    eprintln!(
        "one insert allocates {small} B at 100 issuers, {large} B at {ISSUERS}; \
         one remove at {ISSUERS}: {removed} B"
    );
    assert!(
        large < 4 * small.max(1024),
        "the insert at {ISSUERS} issuers allocated {large} B, at 100 {small} B"
    );
    assert!(
        removed < 4 * small.max(1024),
        "a remove at {ISSUERS} issuers allocated {removed} B"
    );
    assert!(issuers.get("https://tenant-5000.example.com/").is_none());
    assert!(issuers.get("https://tenant-4999.example.com/").is_some());
}
