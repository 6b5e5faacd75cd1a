//! Whoever can write to Redis (or publish on its channel) must not choose the fleet's keys.
//! Two verifiers share a real `redis-server`; an attacker without the fleet's HMAC secret plants
//! values under the entry's key and announces them. Every case: no rogue token accepted, no
//! valid token refused, and the refusal counted by kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, PubsubInterface};
use jwkstash::clock::ManualClock;
use jwkstash::keys::KeySet;
use jwkstash::source::Fetched;
use jwkstash::testkit::{TestKey, eventually, jwks};
use jwkstash::tier::{Cache, Entry};
use jwkstash::{FreshnessPolicy, RedisCache, Verifier};
use jwkstash_core::{Clock, Directory, Invalidation, Invalidations, MockKeySource, unix_millis};
use jwkstash_redis::fred;
use jwkstash_redis::testkit::RedisServer;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "api";
const SECRET: &[u8] = b"the fleet's secret, from the environment";

/// Two instances over one Redis, the provider serving `genuine`, and an attacker's client.
struct Setup {
    redis: RedisServer,
    clock: ManualClock,
    prefix: String,
    caches: Vec<Arc<RedisCache>>,
    instances: Vec<Verifier>,
    upstream: Arc<AtomicUsize>,
    published: Arc<Mutex<String>>,
    raw: fred::clients::Client,
    genuine: TestKey,
    rogue: TestKey,
}

impl Setup {
    async fn start() -> Option<Self> {
        let redis = RedisServer::start().await?;
        let clock = ManualClock::new(std::time::SystemTime::now());
        let prefix = format!("hostile-{:08x}", fastrand::u32(..));
        let genuine = TestKey::ec_p256("k1");
        let upstream = Arc::new(AtomicUsize::new(0));
        let published = Arc::new(Mutex::new(jwks(&[&genuine]).to_string()));
        let (mut caches, mut instances) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let cache = Arc::new(
                RedisCache::builder()
                    .url(redis.url())
                    .prefix(prefix.as_str())
                    .hmac_secret(SECRET.to_vec())
                    .clock(Arc::new(clock.clone()))
                    .build()
                    .await
                    .unwrap(),
            );
            let verifier = Verifier::builder()
                .key_source(source(&published, &upstream))
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .clock(Arc::new(clock.clone()))
                .shared_tier(cache.clone())
                .policy(FreshnessPolicy::default())
                .build()
                .unwrap();
            caches.push(cache);
            instances.push(verifier);
        }
        let raw = Builder::from_config(Config::from_url(&redis.url()).unwrap())
            .build()
            .unwrap();
        raw.init().await.unwrap();
        let setup = Self {
            redis,
            clock,
            prefix,
            caches,
            instances,
            upstream,
            published,
            raw,
            genuine,
            rogue: TestKey::ec_p256("k1"),
        };
        setup.expect_only_genuine().await;
        // The cold start, and one refetch for the rogue kid (absent since, for the whole fleet).
        assert_eq!(setup.upstream.load(Ordering::SeqCst), 2);
        Some(setup)
    }

    fn claims(&self) -> Value {
        let now = unix_millis(self.clock.now()) / 1000;
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user", "iat": now, "exp": now + 7200 })
    }

    /// Every instance accepts the genuine key's tokens and refuses the rogue key's (same kid,
    /// and a rogue kid of its own).
    async fn expect_only_genuine(&self) {
        let valid = self.genuine.sign(&self.claims());
        let rogue = self.rogue.sign(&self.claims());
        let rogue_kid = TestKey::ec_p256("rogue").sign(&self.claims());
        for (i, instance) in self.instances.iter().enumerate() {
            if let Err(error) = instance.verify::<Value>(&valid).await {
                panic!("instance {i} refused a valid token: {error:?}");
            }
            for token in [&rogue, &rogue_kid] {
                assert!(
                    instance.verify::<Value>(token).await.is_err(),
                    "instance {i} accepted a rogue token"
                );
            }
        }
    }

    /// The Redis key of the shared entry.
    async fn entry_key(&self) -> String {
        let found = self
            .redis
            .cli(&["--scan", "--pattern", &format!("{}:*:entry", self.prefix)])
            .await;
        found
            .lines()
            .next()
            .expect("the shared entry")
            .trim()
            .to_owned()
    }

    /// The cache key inside the Redis key's braces.
    async fn cache_key(&self) -> String {
        let key = self.entry_key().await;
        key.split(['{', '}']).nth(1).unwrap().to_owned()
    }

    /// Plants `bytes` as the shared entry and announces a newer version to every instance.
    async fn plant(&self, bytes: Vec<u8>) {
        let key = self.entry_key().await;
        let _: () = self.raw.set(key, bytes, None, None, false).await.unwrap();
        self.announce().await;
    }

    async fn announce(&self) {
        let message = format!("{} {}", self.cache_key().await, u64::MAX / 2);
        let channel = format!("{}:invalidations", self.prefix);
        let _: i64 = self.raw.publish(channel, message).await.unwrap();
    }

    /// Waits until every instance's listener has read and refused a value of `kind`: the
    /// planted value was looked at, not merely left unread.
    async fn refused_by_all(&self, kind: &str) {
        eventually(kind, || {
            self.caches.iter().all(|cache| cache.refusals()[kind] >= 1)
        })
        .await;
    }

    /// Writes `entry` as the shared entry through a cache of this Redis and prefix that seals
    /// with `secret` (`None`: unauthenticated) on `clock`, and announces it.
    async fn forge(&self, secret: Option<&[u8]>, clock: &ManualClock, entry: Entry<Arc<KeySet>>) {
        let builder = RedisCache::builder()
            .url(self.redis.url())
            .prefix(self.prefix.as_str())
            .clock(Arc::new(clock.clone()));
        let forger = match secret {
            Some(secret) => builder.hmac_secret(secret.to_vec()),
            None => builder.insecure_unauthenticated(),
        }
        .build()
        .await
        .unwrap();
        forger.put(&self.cache_key().await, entry).await.unwrap();
        self.announce().await;
    }

    /// GETRANGE calls Redis has served so far (each is one read of the shared entry).
    async fn entry_reads(&self) -> u64 {
        let stats = self.redis.cli(&["INFO", "commandstats"]).await;
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_getrange:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().unwrap())
    }
}

/// The provider: serves the last published set, counting requests.
fn source(published: &Arc<Mutex<String>>, calls: &Arc<AtomicUsize>) -> MockKeySource {
    let mut mock = MockKeySource::new();
    mock.expect_id()
        .return_const("https://idp.test/jwks".to_owned());
    let (published, calls) = (Arc::clone(published), Arc::clone(calls));
    mock.expect_fetch().returning(move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Fetched::Modified {
            body: published.lock().unwrap().clone().into(),
            etag: None,
            max_age: None,
        })
    });
    mock
}

/// An entry of `keys` fetched at `fetched_at`, fresh for `fresh`, usable an hour more.
fn set_of(keys: &[&TestKey], fetched_at: SystemTime, fresh: Duration) -> Entry<Arc<KeySet>> {
    let set = KeySet::parse(jwks(keys).to_string()).unwrap();
    let fresh_until = fetched_at + fresh;
    Entry::new(Arc::new(set), fetched_at, fresh_until, fresh_until + HOUR)
}

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_broken_values_are_refused_and_counted() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    let (genuine, rogue) = (&setup.genuine, &setup.rogue);
    let soon = || setup.clock.now() + Duration::from_millis(1);
    // A superset of the real keys plus a rogue one, tagged under the attacker's own secret.
    setup
        .forge(
            Some(b"the attacker's guess at a secret"),
            &setup.clock,
            set_of(&[genuine, rogue], soon(), HOUR),
        )
        .await;
    setup.refused_by_all("bad_mac").await;
    setup.expect_only_genuine().await;
    // A rogue-only set without a tag.
    setup.clock.advance(Duration::from_millis(2));
    setup
        .forge(None, &setup.clock, set_of(&[rogue], soon(), HOUR))
        .await;
    setup.refused_by_all("missing_mac").await;
    setup.expect_only_genuine().await;
    // Garbage, and 100 MB (read back at most the size cap).
    setup.plant(b"garbage, not an envelope".to_vec()).await;
    setup.refused_by_all("not_an_envelope").await;
    setup.expect_only_genuine().await;
    setup.plant(vec![b'J'; 100 * 1024 * 1024]).await;
    setup.refused_by_all("too_large").await;
    setup.expect_only_genuine().await;
    // An authentic entry from a writer whose clock is an hour ahead: refused as from the future.
    let ahead = ManualClock::new(setup.clock.now() + HOUR);
    setup
        .forge(
            Some(SECRET),
            &ahead,
            set_of(&[genuine, rogue], ahead.now(), HOUR),
        )
        .await;
    setup.refused_by_all("bad_times").await;
    setup.expect_only_genuine().await;
    // Nothing here reached the provider again.
    assert_eq!(setup.upstream.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_extend_a_set_beyond_the_readers_policy() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    // An authentic writer (a misconfigured instance) claims a set fresh for ten years, with a
    // key the provider no longer publishes.
    let retired = TestKey::ec_p256("retired");
    let decade = 10 * 365 * 24 * HOUR;
    let now = setup.clock.now() + Duration::from_millis(1);
    let mut forever = set_of(&[&setup.genuine, &retired], now, decade);
    forever.usable_until = now + 2 * decade;
    setup.forge(Some(SECRET), &setup.clock, forever).await;
    let retired_token = retired.sign(&setup.claims());
    eventually_verifies(&setup, &retired_token).await;
    // The readers hold it to their own max_ttl (24 h): after that it is refreshed from the
    // provider, and the retired key stops verifying everywhere.
    setup.clock.advance(24 * HOUR + MINUTE);
    let valid = setup.genuine.sign(&setup.claims());
    for instance in &setup.instances {
        instance.verify::<Value>(&valid).await.unwrap();
    }
    eventually("the fleet refreshed", || {
        setup.upstream.load(Ordering::SeqCst) == 3
    })
    .await;
    let retired_token = retired.sign(&setup.claims());
    for instance in &setup.instances {
        eventually_refuses(instance, &retired_token).await;
    }
    setup.expect_only_genuine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_envelope_rolls_nothing_back() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    let retired = TestKey::ec_p256("retired");
    // The provider published {genuine, retired}; the fleet caches it; an attacker records it.
    *setup.published.lock().unwrap() = jwks(&[&setup.genuine, &retired]).to_string();
    setup.clock.advance(11 * MINUTE);
    let valid = setup.genuine.sign(&setup.claims());
    setup.instances[0].verify::<Value>(&valid).await.unwrap();
    eventually("the fleet refreshed", || {
        setup.upstream.load(Ordering::SeqCst) == 3
    })
    .await;
    let recorded: Vec<u8> = setup.raw.get(setup.entry_key().await).await.unwrap();
    // The provider retires the key; the fleet refreshes.
    *setup.published.lock().unwrap() = jwks(&[&setup.genuine]).to_string();
    setup.clock.advance(11 * MINUTE);
    setup.instances[0].verify::<Value>(&valid).await.unwrap();
    eventually("the fleet refreshed", || {
        setup.upstream.load(Ordering::SeqCst) == 4
    })
    .await;
    let retired_token = retired.sign(&setup.claims());
    for instance in &setup.instances {
        eventually_refuses(instance, &retired_token).await;
    }
    let current: Vec<u8> = setup.raw.get(setup.entry_key().await).await.unwrap();
    // Written through the cache, the older envelope loses to the newer one (write-if-newer);
    // planted raw and announced, it is authentic but older, and no instance goes back to it.
    let older = KeySet::parse(jwks(&[&setup.genuine, &retired]).to_string()).unwrap();
    let at = setup.clock.now() - 11 * MINUTE;
    let replay = Entry::new(Arc::new(older), at, at + 10 * MINUTE, at + HOUR);
    setup.caches[0]
        .put(&setup.cache_key().await, replay)
        .await
        .unwrap();
    let after: Vec<u8> = setup.raw.get(setup.entry_key().await).await.unwrap();
    assert_eq!(after, current, "an older entry overwrote a newer one");
    let reads = setup.entry_reads().await;
    setup.plant(recorded).await;
    // Both listeners read the planted envelope before the instances are asked.
    until("the replay was read", || async {
        setup.entry_reads().await >= reads + 2
    })
    .await;
    for instance in &setup.instances {
        assert!(
            instance.verify::<Value>(&retired_token).await.is_err(),
            "rolled back"
        );
        instance.verify::<Value>(&valid).await.unwrap();
    }
}

/// A flood of 10,000 announcements costs each instance a few reads of the shared entry. The
/// entry is garbage here, so each instance's reads are its cache's `not_an_envelope`
/// refusals. The count is taken once each instance's listener has provably handled the
/// whole flood: a refresh request published after it, for a probe verifier that only that
/// instance holds, made the probe fetch (messages reach a listener in order, and lost
/// messages never pass for a refresh request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalidations_costs_a_few_reads() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    const GARBAGE: &str = "not_an_envelope";
    setup.plant(b"garbage, not an envelope".to_vec()).await;
    setup.refused_by_all(GARBAGE).await;
    let before: Vec<u64> = setup.caches.iter().map(|c| c.refusals()[GARBAGE]).collect();
    // A probe verifier on each instance's tier, under an issuer of its own: its entry is
    // held by that instance alone.
    let mut probes = Vec::new();
    for (i, cache) in setup.caches.iter().enumerate() {
        let calls = Arc::new(AtomicUsize::new(0));
        let issuer = format!("https://probe-{i}.test/");
        let probe = Verifier::builder()
            .key_source(source(&setup.published, &calls))
            .issuer(issuer.as_str())
            .audience(AUDIENCE)
            .clock(Arc::new(setup.clock.clone()))
            .shared_tier(cache.clone())
            .build()
            .unwrap();
        let key = probe_key(cache, &issuer).await;
        probes.push((probe, calls, key));
    }

    let message = format!("{} {}", setup.cache_key().await, u64::MAX / 2);
    let channel = format!("{}:invalidations", setup.prefix);
    let messages: u64 = 10_000;
    for _ in 0..messages / 100 {
        let burst: Vec<_> = (0..100)
            .map(|_| {
                let (raw, channel, message) = (setup.raw.clone(), channel.clone(), message.clone());
                tokio::spawn(async move {
                    let _: i64 = raw.publish(channel, message).await.unwrap();
                })
            })
            .collect();
        for publish in burst {
            publish.await.unwrap();
        }
    }
    for (_, _, key) in &probes {
        let request = Invalidation::refresh_request(key.as_str());
        setup.caches[0].publish(request).await.unwrap();
    }
    for (i, (_, calls, _)) in probes.iter().enumerate() {
        eventually(&format!("instance {i} handled the flood"), || {
            calls.load(Ordering::SeqCst) >= 1
        })
        .await;
    }
    // Each instance read the entry (a refusal counted), and a few times, not per message.
    let reads: Vec<u64> = setup
        .caches
        .iter()
        .zip(&before)
        .map(|(cache, before)| cache.refusals()[GARBAGE] - before)
        .collect();
    eprintln!("reads of the shared entry for {messages} messages, by instance: {reads:?}");
    for read in &reads {
        assert!(
            (1..messages / 10).contains(read),
            "{reads:?} reads of the shared entry for {messages} messages"
        );
    }
    setup.expect_only_genuine().await;
    drop(probes);
}

/// The entry key that the verifier of `issuer` announced in the tier's directory.
async fn probe_key(cache: &RedisCache, issuer: &str) -> String {
    let key = Mutex::new(None);
    until("the probe announced its entry", || async {
        let announced = cache.announced().await.unwrap();
        let found = announced.into_iter().find(|(_, about)| {
            serde_json::from_str::<Value>(about)
                .is_ok_and(|about| about["issuers"][0].as_str() == Some(issuer))
        });
        *key.lock().unwrap() = found.map(|(key, _)| key);
        key.lock().unwrap().is_some()
    })
    .await;
    key.into_inner().unwrap().unwrap()
}

/// Waits until `condition` holds (checked every millisecond, for at most 10 s): a wait for
/// something to happen, never a bound on how long it takes.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    for _ in 0..10_000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

async fn eventually_verifies(setup: &Setup, token: &str) {
    for instance in &setup.instances {
        until("the authentic set was adopted", || async {
            instance.verify::<Value>(token).await.is_ok()
        })
        .await;
    }
}

async fn eventually_refuses(instance: &Verifier, token: &str) {
    until("the retired key stopped verifying", || async {
        instance.verify::<Value>(token).await.is_err()
    })
    .await;
}
