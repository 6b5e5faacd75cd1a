//! The Redis tier against a real `redis-server`: the conformance suite, hostile values, leases,
//! claims, pub/sub, and faults (down at start, killed, paused).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
use jwkstash_core::testkit::{self, entry_now};
use jwkstash_core::{Cache, CacheErrorKind, Clock, Entry, Lease, ManualClock};
use jwkstash_redis::testkit::{RedisCluster, RedisSentinel, RedisServer, TestCa, tls_config};
use jwkstash_redis::{BuildError, RedisCache};

const SECRET: &[u8] = b"a service secret, never in redis";

/// A cache with the service's secret (authentication is the default).
async fn cache(url: &str, prefix: &str, clock: &ManualClock) -> RedisCache {
    signed_cache(url, prefix, clock, SECRET).await
}

/// A cache that opted out of authentication by name.
async fn unauthenticated_cache(url: &str, prefix: &str, clock: &ManualClock) -> RedisCache {
    RedisCache::builder()
        .url(url)
        .prefix(prefix)
        .insecure_unauthenticated()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap()
}

async fn signed_cache(url: &str, prefix: &str, clock: &ManualClock, secret: &[u8]) -> RedisCache {
    RedisCache::builder()
        .url(url)
        .prefix(prefix)
        .hmac_secret(secret.to_vec())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap()
}

/// A plain fred client, to plant values as an attacker with Redis access would.
async fn raw_client(url: &str) -> fred::clients::Client {
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Runs the core conformance suite on two caches of `url` with different prefixes.
async fn conformance(url: &str, tag: &str, secret: Option<&[u8]>) {
    let clock = ManualClock::default();
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let (a, b) = match secret {
        Some(secret) => (
            signed_cache(url, &a, &clock, secret).await,
            signed_cache(url, &b, &clock, secret).await,
        ),
        None => (
            unauthenticated_cache(url, &a, &clock).await,
            unauthenticated_cache(url, &b, &clock).await,
        ),
    };
    testkit::run_all(Arc::new(a), Arc::new(b), &clock).await;
    // Two instances of one fleet: the same prefix.
    let a = signed_cache(url, tag, &clock, SECRET).await;
    let b = signed_cache(url, tag, &clock, SECRET).await;
    testkit::run_lease_suite(&a, &b, &clock).await;
    testkit::run_invalidations_suite(&a, &b).await;
    testkit::run_directory_suite(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    conformance(&redis.url(), "plain", None).await;
    conformance(&redis.url(), "signed", Some(SECRET)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_through_sentinel() {
    let Some(sentinel) = RedisSentinel::start().await else {
        return;
    };
    conformance(&sentinel.url(), "sentinel", Some(SECRET)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_on_a_cluster() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    conformance(&cluster.url(), "cluster", Some(SECRET)).await;
    // An entry, its lease and its claims hash to one slot (the braces are a hash tag), so the
    // fleet's scripts and leases never cross slots. Asked of the cluster itself:
    let mut slots = Vec::new();
    for part in [
        "entry",
        "lease",
        "kid-refetch",
        "absent:0123456789abcdef:0011223344556677",
    ] {
        let slot = cluster
            .cli(&[
                "CLUSTER",
                "KEYSLOT",
                &format!("cluster-a:{{jwks:0123abcd}}:{part}"),
            ])
            .await;
        slots.push(slot.trim().to_owned());
    }
    assert!(
        !slots[0].is_empty() && slots.iter().all(|slot| *slot == slots[0]),
        "{slots:?}"
    );
    let other = cluster
        .cli(&["CLUSTER", "KEYSLOT", "cluster-a:{jwks:ffff0000}:entry"])
        .await;
    assert_ne!(
        other.trim(),
        slots[0],
        "every source in one slot would overload one node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_read_as_a_miss() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let cache = signed_cache(&redis.url(), "hostile", &clock, SECRET).await;
    let raw = raw_client(&redis.url()).await;
    let key = "hostile:{k}:entry";
    // A genuine envelope to mutate.
    Cache::put(&cache, "k", entry_now(&clock, b"genuine"))
        .await
        .unwrap();
    let genuine: Vec<u8> = raw.get(key).await.unwrap();
    let read = || async { Cache::<Vec<u8>>::get(&cache, "k").await.unwrap() };
    assert!(read().await.is_some());

    let mut bad_mac = genuine.clone();
    let at = bad_mac.len() - 40;
    bad_mac[at] ^= 0x55;
    let mut unknown_version = genuine.clone();
    unknown_version[4] = b'9';
    let unsigned = {
        let other = cache_without_secret(&redis.url(), &clock).await;
        Cache::put(&other, "k", entry_now(&clock, b"unsigned"))
            .await
            .unwrap();
        raw.get::<Vec<u8>, _>(key).await.unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("truncated", genuine[..genuine.len() / 2].to_vec()),
        ("unknown version", unknown_version),
        ("bad mac", bad_mac),
        ("no mac", unsigned),
        ("empty", Vec::new()),
        ("oversize", vec![b'J'; 600 * 1024]),
    ];
    for (name, value) in cases {
        let _: () = raw.set(key, value, None, None, false).await.unwrap();
        assert!(read().await.is_none(), "{name} was trusted");
    }
    // A value of another type.
    let _: i64 = raw.del(key).await.unwrap();
    redis.cli(&["RPUSH", key, "a", "b"]).await;
    assert!(read().await.is_none(), "a list was trusted");
    // Write-if-newer replaces whatever garbage is there.
    Cache::put(&cache, "k", entry_now(&clock, b"healed"))
        .await
        .unwrap();
    assert_eq!(read().await.unwrap().value, b"healed");
}

async fn cache_without_secret(url: &str, clock: &ManualClock) -> RedisCache {
    unauthenticated_cache(url, "hostile", clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_times_read_as_a_miss() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let cache = cache(&redis.url(), "times", &clock).await;
    // Fetched in the future of the reader's clock.
    let writer_clock = ManualClock::new(clock.now() + Duration::from_secs(3600));
    let future = entry_now(&writer_clock, b"from the future");
    let writer = self::cache(&redis.url(), "times", &writer_clock).await;
    Cache::put(&writer, "k", future).await.unwrap();
    assert!(Cache::<Vec<u8>>::get(&cache, "k").await.unwrap().is_none());
    // Past usable_until by the reader's clock.
    let now = clock.now();
    let short = Entry::new(b"old".to_vec(), now, now, now + Duration::from_secs(1));
    Cache::put(&cache, "j", short).await.unwrap();
    clock.advance(Duration::from_secs(2));
    assert!(Cache::<Vec<u8>>::get(&cache, "j").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_set_with_a_bad_mac_is_rejected() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let ours = signed_cache(&redis.url(), "mac", &clock, SECRET).await;
    let attacker = signed_cache(&redis.url(), "mac", &clock, b"the attacker's own secret").await;
    Cache::put(&attacker, "k", entry_now(&clock, b"planted keys"))
        .await
        .unwrap();
    assert!(Cache::<Vec<u8>>::get(&ours, "k").await.unwrap().is_none());
    // An envelope copied from another key is refused too, even with a valid tag.
    Cache::put(&ours, "other", entry_now(&clock, b"keys of another source"))
        .await
        .unwrap();
    let raw = raw_client(&redis.url()).await;
    let copied: Vec<u8> = raw.get("mac:{other}:entry").await.unwrap();
    let _: () = raw
        .set("mac:{k}:entry", copied, None, None, false)
        .await
        .unwrap();
    assert!(Cache::<Vec<u8>>::get(&ours, "k").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_names_are_checked() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let a = cache(&redis.url(), "claims", &clock).await;
    // No raw input reaches a key.
    for slot in ["../x y", "", "a\nb"] {
        assert!(
            a.claim_period("k", slot, clock.now(), Duration::from_secs(30))
                .await
                .is_err(),
            "{slot:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_used_once_it_is_up() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    redis.kill().await;
    let clock = ManualClock::default();
    let started = Instant::now();
    let cache = RedisCache::builder()
        .url(redis.url())
        .prefix("late")
        .hmac_secret(SECRET.to_vec())
        .clock(Arc::new(clock.clone()))
        .circuit(3, Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let error = Cache::<Vec<u8>>::get(&cache, "k").await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    redis.restart().await;
    let written = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if Cache::put(&cache, "k", entry_now(&clock, b"v"))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(written.is_ok(), "never reconnected");
    assert!(Cache::<Vec<u8>>::get(&cache, "k").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_costs_at_most_the_deadline_then_nothing() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let cache = RedisCache::builder()
        .url(redis.url())
        .prefix("paused")
        .hmac_secret(SECRET.to_vec())
        .clock(Arc::new(clock.clone()))
        .call_timeout(Duration::from_millis(100))
        .circuit(3, Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    Cache::put(&cache, "k", entry_now(&clock, b"v"))
        .await
        .unwrap();
    redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"]).await;
    for _ in 0..3 {
        let started = Instant::now();
        let error = Cache::<Vec<u8>>::get(&cache, "k").await.unwrap_err();
        assert_eq!(error.kind(), CacheErrorKind::Timeout);
        // The call deadline (100 ms) holds: not before it, and well within ten times it.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(1),
            "{took:?}"
        );
    }
    // The circuit is open: calls fail at once.
    assert!(cache.circuit_open());
    let started = Instant::now();
    let error = Cache::<Vec<u8>>::get(&cache, "k").await.unwrap_err();
    assert_eq!(error.kind(), CacheErrorKind::Unavailable);
    // Redis is still paused: a call that reached it would have waited its 100 ms deadline.
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "an open circuit waited for the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_must_be_safe_and_secrets_stay_out_of_debug() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    for prefix in ["", "a b", "x{y}", "new\nline"] {
        let built = RedisCache::builder()
            .url(redis.url())
            .prefix(prefix)
            .build()
            .await;
        assert!(built.is_err(), "{prefix:?} accepted");
    }
    let weak = RedisCache::builder()
        .url(redis.url())
        .prefix("p")
        .hmac_secret(b"short".to_vec())
        .build()
        .await;
    assert!(matches!(weak, Err(BuildError::WeakSecret)));
    // No secret: refused unless the caller opts out by name.
    let unauthenticated = RedisCache::builder()
        .url(redis.url())
        .prefix("p")
        .build()
        .await;
    assert!(matches!(unauthenticated, Err(BuildError::MissingSecret)));
    let only_previous = RedisCache::builder()
        .url(redis.url())
        .prefix("p")
        .previous_hmac_secret(SECRET.to_vec())
        .build()
        .await;
    assert!(matches!(only_previous, Err(BuildError::MissingSecret)));
    let builder = RedisCache::builder()
        .url(redis.url())
        .prefix("p")
        .hmac_secret(SECRET.to_vec());
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains(jwkstash_redis::testkit::PASSWORD),
        "{shown}"
    );
    assert!(!shown.contains("service secret"), "{shown}");
    let cache = builder.build().await.unwrap();
    let shown = format!("{cache:?}");
    assert!(
        !shown.contains(jwkstash_redis::testkit::PASSWORD) && !shown.contains("service secret"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotates_without_a_miss_and_refusals_are_counted() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::default();
    let (old, new) = (
        &b"the secret of last quarter"[..],
        &b"the secret of this quarter"[..],
    );
    let before = signed_cache(&redis.url(), "rotation", &clock, old).await;
    Cache::put(&before, "k", entry_now(&clock, b"keys"))
        .await
        .unwrap();
    // Mid-rotation: writes with the new secret, still reads what the old one tagged.
    let during = RedisCache::builder()
        .url(redis.url())
        .prefix("rotation")
        .hmac_secret(new.to_vec())
        .previous_hmac_secret(old.to_vec())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    assert!(Cache::<Vec<u8>>::get(&during, "k").await.unwrap().is_some());
    clock.advance(Duration::from_millis(1));
    Cache::put(&during, "k", entry_now(&clock, b"keys"))
        .await
        .unwrap();
    // After it: the new secret alone reads the new tag; the old secret alone no longer does.
    let after = signed_cache(&redis.url(), "rotation", &clock, new).await;
    assert!(Cache::<Vec<u8>>::get(&after, "k").await.unwrap().is_some());
    assert!(Cache::<Vec<u8>>::get(&before, "k").await.unwrap().is_none());
    assert_eq!(before.refusals()["bad_mac"], 1);
    // An unauthenticated envelope is refused by every authenticated reader, and counted.
    let open = unauthenticated_cache(&redis.url(), "rotation", &clock).await;
    clock.advance(Duration::from_millis(1));
    Cache::put(&open, "k", entry_now(&clock, b"planted"))
        .await
        .unwrap();
    assert!(Cache::<Vec<u8>>::get(&after, "k").await.unwrap().is_none());
    assert_eq!(after.refusals()["missing_mac"], 1);
    assert_eq!(after.refusals().values().sum::<u64>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_passes_the_conformance_suite_and_refuses_an_untrusted_server() {
    let TestCa { ca, cert, key } = TestCa::new();
    let Some(redis) = RedisServer::start_tls(&cert, &key).await else {
        return;
    };
    let url = redis.tls_url().unwrap();
    let clock = ManualClock::default();
    let over_tls = |prefix: &'static str| {
        RedisCache::builder()
            .config(tls_config(&url, &ca))
            .prefix(prefix)
            .hmac_secret(SECRET.to_vec())
            .clock(Arc::new(clock.clone()))
            .build()
    };
    let (a, b) = (
        over_tls("tls-a").await.unwrap(),
        over_tls("tls-b").await.unwrap(),
    );
    testkit::run_all(Arc::new(a), Arc::new(b), &clock).await;
    // What a cache wrote over TLS is in the server (read back on its plain admin port).
    let stored = redis.cli(&["--scan", "--pattern", "tls-a:*"]).await;
    assert!(
        !stored.trim().is_empty(),
        "nothing reached the server over TLS"
    );

    // Trusting another CA: the handshake fails, every call is an error, nothing is trusted.
    let other_ca = TestCa::new().ca;
    let untrusted = RedisCache::builder()
        .config(tls_config(&url, &other_ca))
        .prefix("tls-a")
        .hmac_secret(SECRET.to_vec())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    assert!(Cache::<Vec<u8>>::get(&untrusted, "k").await.is_err());
}
