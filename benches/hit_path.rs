//! The hit paths, each beside its floor in one criterion group:
//!
//! * `verify_hit/{rs256,es256,eddsa}`: `Verifier::verify` on a warm verifier, single task,
//!   beside `jsonwebtoken::decode` with a pre-parsed `DecodingKey` and the same `Validation`.
//! * `verify_hit_concurrent`: the same with 16 tasks on a 2-worker runtime (throughput).
//! * `key_lookup`: kid → key through `Tiered<MemoryCache, RedisCache>` on a near-tier hit,
//!   beside a plain `HashMap` lookup.
//! * `l2_hit`: near tier cold, Redis warm (loopback), beside one Redis `GET` plus the parse of
//!   the set. Skipped with a message when `redis-server` is not installed.
//! * `verified_token_cache_hit`: a repeated token from the verified-token cache, beside the
//!   RS256 floor.
//! * `verify_stale_while_refreshing`: `Verifier::verify` (RS256) while the set is past its
//!   freshness and the refresh hangs at the provider (an embedded one on 127.0.0.1), beside the
//!   RS256 floor: stale-while-revalidate costs a verification nothing measurable.
//!
//! `cargo bench --features redis,testkit`; `scripts/bench_report.py` writes BENCHMARKS.md's
//! table and the chart from criterion's output.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use jwkstash::keys::Algorithm;
use jwkstash::keys::KeySet;
use jwkstash::testkit::{Behaviour, IdpBuilder, StaticSource, TestKey, jwks};
use jwkstash::tier::{Cache, Entry, Tiered};
use jwkstash::{FreshnessPolicy, MemoryCache, RedisCache, Verifier};
use jwkstash_core::ManualClock;
use jwkstash_redis::fred::prelude::{Builder, ClientLike, Config, KeysInterface};
use jwkstash_redis::testkit::RedisServer;
use serde::Deserialize;
use serde_json::json;
use tokio::runtime::Runtime;

const ISSUER: &str = "https://idp.bench/";
const AUDIENCE: &str = "bench";
const TASKS: u64 = 16;

/// The claims both sides deserialize.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
}

fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 86_400 })
}

/// A warm verifier, a token, and the floor's pre-parsed key and validation.
struct Case {
    verifier: Verifier,
    token: String,
    key: DecodingKey,
    validation: Validation,
}

impl Case {
    fn new(runtime: &Runtime, key: TestKey, cache_tokens: bool) -> Self {
        let document = jwks(&[&key]).to_string();
        let mut builder = Verifier::builder()
            .key_source(StaticSource::new(document))
            .issuer(ISSUER)
            .audience(AUDIENCE);
        if cache_tokens {
            builder = builder.cache_verified_tokens(10_000, Duration::from_secs(300));
        }
        let verifier = builder.build().unwrap();
        let token = key.sign(&claims());
        runtime.block_on(verifier.verify::<Claims>(&token)).unwrap();
        let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        let mut validation = Validation::new(key.alg().try_into().unwrap());
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 60;
        Self {
            verifier,
            token,
            key: DecodingKey::from_jwk(&jwk).unwrap(),
            validation,
        }
    }

    fn floor(&self) -> Claims {
        jsonwebtoken::decode::<Claims>(&self.token, &self.key, &self.validation)
            .unwrap()
            .claims
    }
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn keys() -> [(&'static str, TestKey); 3] {
    [
        ("rs256", TestKey::rsa("k1")),
        ("es256", TestKey::ec_p256("k1")),
        ("eddsa", TestKey::ed25519("k1")),
    ]
}

fn verify_hit(c: &mut Criterion) {
    let runtime = runtime(1);
    let mut group = c.benchmark_group("verify_hit");
    for (name, key) in keys() {
        let case = Case::new(&runtime, key, false);
        group.bench_function(format!("{name}/floor"), |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(case.floor()) })
        });
        group.bench_function(format!("{name}/jwkstash"), |b| {
            b.to_async(&runtime).iter(|| async {
                black_box(case.verifier.verify::<Claims>(&case.token).await.unwrap())
            })
        });
    }
    group.finish();
}

fn verify_hit_concurrent(c: &mut Criterion) {
    let runtime = Arc::new(runtime(2));
    let mut group = c.benchmark_group("verify_hit_concurrent");
    group.throughput(Throughput::Elements(1));
    let case = Arc::new(Case::new(&runtime, TestKey::rsa("k1"), false));
    group.bench_function("rs256/floor", |b| {
        b.iter_custom(|iters| {
            concurrently(&runtime, &case, iters, |case| async move {
                drop(black_box(case.floor()))
            })
        })
    });
    group.bench_function("rs256/jwkstash", |b| {
        b.iter_custom(|iters| {
            concurrently(&runtime, &case, iters, |case| async move {
                drop(black_box(
                    case.verifier.verify::<Claims>(&case.token).await.unwrap(),
                ))
            })
        })
    });
    group.finish();
}

/// Runs `iters` calls spread over 16 tasks and returns the wall time.
fn concurrently<F, Fut>(runtime: &Runtime, case: &Arc<Case>, iters: u64, call: F) -> Duration
where
    F: Fn(Arc<Case>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let case = Arc::clone(case);
                let share = iters / TASKS + u64::from(task < iters % TASKS);
                tokio::spawn(async move {
                    for _ in 0..share {
                        call(Arc::clone(&case)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        started.elapsed()
    })
}

/// A Redis for the benches that need one, or a message.
fn redis(runtime: &Runtime) -> Option<RedisServer> {
    let server = runtime.block_on(RedisServer::start());
    if server.is_none() {
        eprintln!(
            "redis-server not installed: l2_hit skipped, key_lookup uses an unreachable Redis"
        );
    }
    server
}

async fn redis_cache(url: &str) -> RedisCache {
    RedisCache::builder()
        .url(url)
        .prefix("bench")
        .hmac_secret(b"benchmark secret, 16+ bytes".to_vec())
        .build()
        .await
        .unwrap()
}

fn set_entry(key: &TestKey) -> Entry<Arc<KeySet>> {
    let set = KeySet::parse(jwks(&[key]).to_string()).unwrap();
    let now = SystemTime::now();
    Entry::new(
        Arc::new(set),
        now,
        now + Duration::from_secs(600),
        now + Duration::from_secs(4200),
    )
}

fn key_lookup(c: &mut Criterion) {
    let runtime = runtime(1);
    let server = redis(&runtime);
    let url = server
        .as_ref()
        .map_or("redis://127.0.0.1:1".to_owned(), RedisServer::url);
    let key = TestKey::rsa("k1");
    let entry = set_entry(&key);
    let stack = runtime.block_on(async {
        let stack = Tiered::new(MemoryCache::<Arc<KeySet>>::new(), redis_cache(&url).await);
        stack.put("jwks:bench", entry.clone()).await.unwrap();
        stack
    });
    let map: HashMap<String, Arc<KeySet>> =
        [("jwks:bench".to_owned(), Arc::clone(&entry.value))].into();
    let mut group = c.benchmark_group("key_lookup");
    group.bench_function("hashmap", |b| {
        b.iter(|| {
            let set = map.get(black_box("jwks:bench")).unwrap();
            black_box(set.find(Some("k1"), Algorithm::RS256).unwrap().kid());
        })
    });
    group.bench_function("tiered_memory_redis", |b| {
        b.to_async(&runtime).iter(|| async {
            let entry = stack.get(black_box("jwks:bench")).await.unwrap().unwrap();
            black_box(
                entry
                    .value
                    .find(Some("k1"), Algorithm::RS256)
                    .unwrap()
                    .kid(),
            );
        })
    });
    group.finish();
    drop(server);
}

fn l2_hit(c: &mut Criterion) {
    // One thread for the client side: the Redis round trip is timed without cross-thread
    // wake-ups, and redis-server has the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(server) = redis(&runtime) else {
        return;
    };
    let key = TestKey::rsa("k1");
    let entry = set_entry(&key);
    let (cache, raw) = runtime.block_on(async {
        let cache = redis_cache(&server.url()).await;
        cache.put("jwks:bench", entry.clone()).await.unwrap();
        let raw = Builder::from_config(Config::from_url(&server.url()).unwrap())
            .build()
            .unwrap();
        raw.init().await.unwrap();
        let _: () = raw
            .set("plain-jwks", entry.value.raw().to_vec(), None, None, false)
            .await
            .unwrap();
        (cache, raw)
    });
    let mut group = c.benchmark_group("l2_hit");
    group.bench_function("get_and_parse_floor", |b| {
        b.to_async(&runtime).iter(|| async {
            let bytes: Vec<u8> = raw.get("plain-jwks").await.unwrap();
            black_box(KeySet::parse(bytes).unwrap());
        })
    });
    group.bench_function("jwkstash", |b| {
        // A cold near tier each time (made outside the timing): the read goes to Redis, checks
        // the envelope, parses the set and fills the near tier.
        b.to_async(&runtime).iter_batched(
            || Tiered::new(MemoryCache::<Arc<KeySet>>::new(), cache.clone()),
            |stack| async move {
                black_box(stack.get("jwks:bench").await.unwrap().unwrap());
                stack
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn verified_token_cache_hit(c: &mut Criterion) {
    let runtime = runtime(1);
    let case = Case::new(&runtime, TestKey::rsa("k1"), true);
    let mut group = c.benchmark_group("verified_token_cache_hit");
    group.bench_function("rs256/floor", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(case.floor()) })
    });
    group.bench_function("rs256/cached", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(case.verifier.verify::<Claims>(&case.token).await.unwrap())
        })
    });
    group.finish();
    let stats = case.verifier.stats();
    assert!(
        stats.verified <= 1 || stats.verified_token_hits > 0,
        "{stats:?}"
    );
}

fn verify_stale_while_refreshing(c: &mut Criterion) {
    let runtime = runtime(1);
    let clock = ManualClock::new(SystemTime::now());
    let (idp, verifier) = runtime.block_on(async {
        let idp = IdpBuilder::default()
            .key(TestKey::rsa("k1"))
            .clock(Arc::new(clock.clone()))
            .start()
            .await
            .unwrap();
        // Fetch deadlines (the HTTP client's and the verifier's) longer than the benchmark:
        // the refresh hangs throughout.
        let source = jwkstash::source::HttpKeySource::builder(idp.jwks_url())
            .allow_http(true)
            .timeout(Duration::from_secs(3600))
            .build()
            .unwrap();
        let verifier = Verifier::builder()
            .key_source(source)
            .policy(FreshnessPolicy::default().fetch_timeout(Duration::from_secs(3600)))
            .issuer(idp.issuer())
            .audience(idp.audience())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        verifier.prefetch().await.unwrap();
        (idp, verifier)
    });
    // Past the 10-minute TTL with the provider hanging: the first verification starts the
    // refresh, which stays in flight for the whole benchmark.
    idp.set_behaviour(Behaviour::Hang);
    clock.advance(Duration::from_secs(11 * 60));
    let token = idp.mint();
    runtime.block_on(async {
        verifier.verify::<serde_json::Value>(&token).await.unwrap();
        while idp.open_requests() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let jwk: Jwk = serde_json::from_value(idp.signing_key().public_jwk()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::RS256.try_into().unwrap());
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&[idp.audience()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 60;
    let mut group = c.benchmark_group("verify_stale_while_refreshing");
    group.bench_function("rs256/floor", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(jsonwebtoken::decode::<IdpClaims>(&token, &key, &validation).unwrap())
        })
    });
    group.bench_function("rs256/jwkstash", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(verifier.verify::<IdpClaims>(&token).await.unwrap()) })
    });
    group.finish();
    let stats = verifier.stats();
    assert!(stats.stale_served > 0 && stats.fetches == 2, "{stats:?}");
    assert_eq!(idp.open_requests(), 1, "the refresh stopped hanging");
}

/// The claims of the embedded provider's tokens.
#[derive(Deserialize)]
#[allow(dead_code)]
struct IdpClaims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
}

criterion_group!(
    benches,
    verify_hit,
    verify_hit_concurrent,
    key_lookup,
    l2_hit,
    verified_token_cache_hit,
    verify_stale_while_refreshing
);
criterion_main!(benches);
