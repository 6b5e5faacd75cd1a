//! What one more tenant costs in memory: measured with a counting allocator, for tenants that
//! share one key set through an issuer template (goal: under 1 KiB each) and, for comparison,
//! for issuers resolved on first sight (one verifier each). Run with `--nocapture` to see the
//! figures written in BENCHMARKS.md.
// A counting global allocator needs `unsafe`; it only forwards to the system allocator.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::{tenant, tenant_token as token};
use jwkstash_jwks::testkit::{TestKey, jwks};
use jwkstash_jwks::{IssuerTemplate, Issuers, StaticKeySource, Verifier, VerifierBuilder};
use serde_json::Value;

/// Bytes allocated and not yet freed, by the whole test binary.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const TENANTS: usize = 1000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "current_thread")]
async fn one_more_tenant_of_a_shared_key_set_costs_under_one_kib() {
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
