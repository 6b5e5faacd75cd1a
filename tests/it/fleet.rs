//! A fleet of verifiers sharing one tier: one upstream fetch for all of them.
//!
//! Each scenario runs over the in-process shared tier and over a real `redis-server` (and the
//! cold-start ones over a three-node Redis Cluster). The upstream is a mockall `KeySource`
//! counted across the fleet; freshness runs on a shared manual clock, leases and Redis on real
//! (short) time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jwkstash::clock::{Clock, ManualClock};
use jwkstash::events::KeyEvent;
use jwkstash::source::Fetched;
use jwkstash::testkit::{TestKey, eventually, jwks};
use jwkstash::tier::SharedKeySetTier;
use jwkstash::{FreshnessPolicy, InvalidToken, MemoryCache, RedisCache, Verifier, VerifyError};
use jwkstash_core::{Lease, MockKeySource};
use jwkstash_redis::testkit::{RedisCluster, RedisSentinel, RedisServer, TestCa, tls_config};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "api";
const LEASE_TTL: Duration = Duration::from_millis(500);
const FETCH_TIME: Duration = Duration::from_millis(100);
const MINUTE: Duration = Duration::from_secs(60);

/// Where the shared tier lives.
#[derive(Clone)]
enum Shared {
    Memory(MemoryCache<Arc<jwkstash::keys::KeySet>>),
    /// A Redis; `ca` set: `url` is `rediss://` and the instances trust that root only.
    Redis {
        url: String,
        prefix: String,
        ca: Option<String>,
    },
}

impl Shared {
    fn memory(clock: &ManualClock) -> Self {
        Self::Memory(
            MemoryCache::builder()
                .clock(Arc::new(clock.clone()))
                .build(),
        )
    }

    fn redis(url: String) -> Self {
        Self::Redis {
            url,
            prefix: format!("fleet-{:08x}", fastrand::u32(..)),
            ca: None,
        }
    }

    fn redis_tls(url: String, ca: String) -> Self {
        Self::Redis {
            url,
            prefix: format!("fleet-tls-{:08x}", fastrand::u32(..)),
            ca: Some(ca),
        }
    }

    /// A handle for one instance: the same memory tier, or a new Redis connection.
    async fn connect(&self, clock: &ManualClock) -> SharedKeySetTier {
        match self {
            Self::Memory(cache) => Arc::new(cache.clone()),
            Self::Redis { url, prefix, ca } => {
                Arc::new(redis_handle(url, prefix, ca.as_deref(), clock).await)
            }
        }
    }
}

async fn redis_handle(
    url: &str,
    prefix: &str,
    ca: Option<&str>,
    clock: &ManualClock,
) -> RedisCache {
    let builder = match ca {
        Some(ca) => RedisCache::builder().config(tls_config(url, ca)),
        None => RedisCache::builder().url(url),
    };
    builder
        .prefix(prefix)
        .hmac_secret(b"the fleet's shared secret".to_vec())
        .clock(Arc::new(clock.clone()))
        .circuit(3, Duration::from_millis(300))
        .build()
        .await
        .unwrap()
}

/// The upstream: one mockall mock shared by every instance of the fleet (each holds an `Arc`
/// of it), with scripted answers, each taking `FETCH_TIME`. Built with [`Upstream::expecting`],
/// the mock fails the test by itself when the fleet fetched another number of times.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    answers: Arc<std::sync::Mutex<Vec<Fetched>>>,
    /// While set, every fetch answers 500.
    failing: Arc<std::sync::atomic::AtomicBool>,
    source: Arc<Slow>,
}

/// Holds fetches open until released, and counts the open ones: "a verification did not wait
/// for the fetch" is then shown by the fetch still being open when the verification returned.
#[derive(Default)]
struct Gate {
    held: tokio::sync::watch::Sender<bool>,
    open: AtomicUsize,
}

impl Upstream {
    /// An upstream serving `keys`, counted but with no expected total.
    fn serving(keys: &[&TestKey]) -> Self {
        Self::expecting(keys, 0..)
    }

    /// An upstream serving `keys` that the whole fleet must call `times` times.
    fn expecting(keys: &[&TestKey], times: impl Into<mockall::TimesRange>) -> Self {
        let calls: Arc<AtomicUsize> = Arc::default();
        let answers = Arc::new(std::sync::Mutex::new(vec![answer(keys)]));
        let failing: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let mut mock = MockKeySource::new();
        mock.expect_id()
            .return_const("https://idp.test/jwks".to_owned());
        let (counted, scripted, down) = (
            Arc::clone(&calls),
            Arc::clone(&answers),
            Arc::clone(&failing),
        );
        mock.expect_fetch().times(times).returning(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            if down.load(Ordering::SeqCst) {
                return Err(jwkstash::source::FetchError::Status(500));
            }
            Ok(scripted.lock().unwrap().last().cloned().expect("an answer"))
        });
        Self {
            calls,
            answers,
            failing,
            source: Arc::new(Slow {
                mock,
                gate: Gate::default(),
            }),
        }
    }

    /// From now on, fetches stay open until [`release`](Self::release).
    fn hold(&self) {
        self.source.gate.held.send_replace(true);
    }

    /// Lets held fetches (and later ones) go on.
    fn release(&self) {
        self.source.gate.held.send_replace(false);
    }

    /// Fetches that have started and not yet returned.
    fn open(&self) -> usize {
        self.source.gate.open.load(Ordering::SeqCst)
    }

    /// From the next fetch on, answer 500.
    fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// From the next fetch on, serve `keys`.
    fn publish(&self, keys: &[&TestKey]) {
        self.answers.lock().unwrap().push(answer(keys));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The fleet's one source (an instance holds an `Arc` of it).
    fn source(&self) -> Arc<Slow> {
        Arc::clone(&self.source)
    }
}

fn answer(keys: &[&TestKey]) -> Fetched {
    Fetched::Modified {
        body: jwks(keys).to_string().into(),
        etag: None,
        max_age: None,
    }
}

/// The mock behind a real delay, so that concurrent callers overlap, and behind the gate.
struct Slow {
    mock: MockKeySource,
    gate: Gate,
}

#[async_trait::async_trait]
impl jwkstash::source::KeySource for Slow {
    fn id(&self) -> &str {
        self.mock.id()
    }

    async fn fetch(
        &self,
        validators: &jwkstash::source::Validators,
    ) -> Result<Fetched, jwkstash::source::FetchError> {
        self.gate.open.fetch_add(1, Ordering::SeqCst);
        let mut held = self.gate.held.subscribe();
        let _ = held.wait_for(|held| !held).await;
        tokio::time::sleep(FETCH_TIME).await;
        let fetched = self.mock.fetch(validators).await;
        self.gate.open.fetch_sub(1, Ordering::SeqCst);
        fetched
    }
}

struct Fleet {
    clock: ManualClock,
    upstream: Upstream,
    instances: Vec<Verifier>,
    /// Each instance's own handle to the shared tier.
    handles: Vec<SharedKeySetTier>,
}

impl Fleet {
    /// `size` instances built by `configure` (source, issuer, audience) on one shared tier,
    /// all reading `clock`.
    async fn start_with(
        size: usize,
        shared: &Shared,
        clock: ManualClock,
        upstream: Upstream,
        configure: impl Fn() -> jwkstash::VerifierBuilder,
    ) -> Self {
        let (mut instances, mut handles) = (Vec::new(), Vec::new());
        for _ in 0..size {
            let handle = shared.connect(&clock).await;
            handles.push(Arc::clone(&handle));
            instances.push(
                configure()
                    .clock(Arc::new(clock.clone()))
                    .shared_tier(handle)
                    .lease_ttl(LEASE_TTL)
                    .build()
                    .unwrap(),
            );
        }
        Self {
            clock,
            upstream,
            instances,
            handles,
        }
    }

    async fn start(size: usize, shared: &Shared, clock: ManualClock, upstream: Upstream) -> Self {
        let source = upstream.clone();
        let configure = move || {
            Verifier::builder()
                .key_source(source.source())
                .issuer(ISSUER)
                .audience(AUDIENCE)
        };
        Self::start_with(size, shared, clock, upstream, configure).await
    }

    /// Waits until every instance's own handle answers the shared tier again (its connection
    /// is back and its circuit closed).
    async fn wait_until_reconnected(&self) {
        let reconnected = tokio::time::timeout(Duration::from_secs(10), async {
            for handle in &self.handles {
                while handle
                    .claim_period("probe", "up", self.clock.now(), Duration::ZERO)
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
        .await;
        assert!(reconnected.is_ok(), "an instance never reached Redis again");
    }

    /// Waits until every instance holds a fresh set (background refreshes have landed).
    async fn until_all_fresh(&self) {
        eventually("every instance fresh", || {
            self.instances.iter().all(|verifier| {
                matches!(verifier.health(), jwkstash::events::KeyHealth::Fresh { .. })
            })
        })
        .await;
    }

    /// Verifies all `tokens` at once and fails the test if one is refused.
    async fn expect_valid(&self, tokens: &[String]) {
        let outcomes = self.verify_all(tokens).await;
        if let Some(refused) = outcomes.iter().find(|outcome| outcome.is_err()) {
            panic!("a valid token was refused: {refused:?}");
        }
    }

    /// Verifies `tokens[i]` on instance `i % size`, all at once.
    async fn verify_all(&self, tokens: &[String]) -> Vec<Result<Value, VerifyError>> {
        let tasks: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let verifier = self.instances[i % self.instances.len()].clone();
                let token = token.clone();
                tokio::spawn(async move { verifier.verify::<Value>(&token).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    }
}

fn instance(upstream: &Upstream, shared: SharedKeySetTier, clock: &ManualClock) -> Verifier {
    Verifier::builder()
        .key_source(upstream.source())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .shared_tier(shared)
        .lease_ttl(LEASE_TTL)
        .policy(FreshnessPolicy::default())
        .build()
        .unwrap()
}

fn claims(clock: &ManualClock) -> Value {
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user", "iat": now, "exp": now + 7200 })
}

fn random_kid_token(key: &TestKey, clock: &ManualClock) -> String {
    let header = json!({ "alg": key.alg(), "kid": format!("random-{:016x}", fastrand::u64(..)) });
    key.sign_with_header(&header, &claims(clock))
}

async fn with_redis() -> Option<RedisServer> {
    RedisServer::start().await
}

// ---------------------------------------------------------------- scenarios

/// 1,000 concurrent cold verifications over 8 instances: one upstream fetch; after expiry, one
/// more for the whole fleet.
async fn cold_start_and_expiry(shared: Shared, clock: ManualClock) {
    let key = TestKey::ec_p256("k1");
    let fleet = Fleet::start(8, &shared, clock, Upstream::expecting(&[&key], 2)).await;
    let token = key.sign(&claims(&fleet.clock));
    let outcomes = fleet.verify_all(&vec![token.clone(); 1000]).await;
    assert!(
        outcomes.iter().all(Result::is_ok),
        "{:?}",
        outcomes.iter().find(|o| o.is_err())
    );
    assert_eq!(
        fleet.upstream.calls(),
        1,
        "the fleet fetched more than once"
    );

    fleet.clock.advance(11 * MINUTE);
    // Stale sets serve at once; one refresh runs behind them for the whole fleet.
    fleet.expect_valid(&vec![token.clone(); 400]).await;
    eventually("the fleet refreshed", || fleet.upstream.calls() >= 2).await;
    // Let every instance's background load settle, then nothing more is fetched.
    fleet.expect_valid(&vec![token; 400]).await;
    assert_eq!(fleet.upstream.calls(), 2, "expiry cost more than one fetch");
}

/// A flood of random kids across the fleet: at most one refetch per cooldown fleet-wide, and
/// valid tokens do not wait for it.
async fn unknown_kid_flood(shared: Shared, clock: ManualClock) {
    let key = TestKey::ec_p256("k1");
    let upstream = Upstream::expecting(&[&key], 2..=3);
    let source = upstream.clone();
    // The forged tokens wait for the refetch however long the test holds it.
    let configure = move || {
        Verifier::builder()
            .key_source(source.source())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .policy(FreshnessPolicy::default().unknown_kid_wait(Duration::from_secs(60)))
    };
    let fleet = Fleet::start_with(8, &shared, clock, upstream, configure).await;
    let valid = key.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![valid.clone(); 8]).await;
    assert_eq!(fleet.upstream.calls(), 1);

    let forged: Vec<String> = (0..1000)
        .map(|_| random_kid_token(&key, &fleet.clock))
        .collect();
    fleet.upstream.hold();
    let flood = {
        let instances = fleet.instances.clone();
        tokio::spawn(async move {
            let tasks: Vec<_> = forged
                .into_iter()
                .enumerate()
                .map(|(i, token)| {
                    let verifier = instances[i % instances.len()].clone();
                    tokio::spawn(async move { verifier.verify::<Value>(&token).await })
                })
                .collect();
            for task in tasks {
                let error = task.await.unwrap().unwrap_err();
                assert!(error.is_invalid_token(), "{error:?}");
            }
        })
    };
    // Valid tokens verify while the flood's refetch is held open: they do not wait for it.
    eventually("the flood's refetch is in flight", || {
        fleet.upstream.open() >= 1
    })
    .await;
    for instance in &fleet.instances {
        instance.verify::<Value>(&valid).await.unwrap();
        assert!(fleet.upstream.open() >= 1, "the refetch ended before a hit");
    }
    fleet.upstream.release();
    flood.await.unwrap();
    assert!(
        fleet.upstream.calls() <= 2,
        "{} fetches for one cooldown",
        fleet.upstream.calls()
    );

    // Within the cooldown, more random kids on every instance: no fetch.
    fleet.clock.advance(Duration::from_secs(10));
    let forged: Vec<String> = (0..80)
        .map(|_| random_kid_token(&key, &fleet.clock))
        .collect();
    let calls = fleet.upstream.calls();
    assert!(fleet.verify_all(&forged).await.iter().all(Result::is_err));
    assert_eq!(fleet.upstream.calls(), calls);

    // The next cooldown allows one more refetch for the whole fleet.
    fleet.clock.advance(Duration::from_secs(31));
    let forged: Vec<String> = (0..80)
        .map(|_| random_kid_token(&key, &fleet.clock))
        .collect();
    assert!(fleet.verify_all(&forged).await.iter().all(Result::is_err));
    assert!(
        fleet.upstream.calls() <= calls + 1,
        "{} > {}",
        fleet.upstream.calls(),
        calls + 1
    );
}

/// A flood of forged signatures under a real kid across the fleet costs one refetch for the
/// whole fleet; when the provider then reuses the kid for a new key, one more refetch (after
/// the cooldown) lets every instance accept the new key's tokens.
async fn reused_kid(shared: Shared, clock: ManualClock) {
    let (key, forger, reused) = (
        TestKey::ec_p256("k1"),
        TestKey::ec_p256("k1"),
        TestKey::ec_p256("k1"),
    );
    let fleet = Fleet::start(8, &shared, clock, Upstream::expecting(&[&key], 3)).await;
    let valid = key.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![valid.clone(); 8]).await;
    assert_eq!(fleet.upstream.calls(), 1);

    fleet.clock.advance(Duration::from_secs(1));
    let forged = forger.sign(&claims(&fleet.clock));
    for outcome in fleet.verify_all(&vec![forged.clone(); 800]).await {
        assert!(
            matches!(
                outcome,
                Err(VerifyError::InvalidToken(InvalidToken::BadSignature))
            ),
            "{outcome:?}"
        );
    }
    assert_eq!(fleet.upstream.calls(), 2, "one refetch for the whole fleet");
    fleet.expect_valid(&vec![valid; 8]).await;

    fleet.upstream.publish(&[&reused]);
    fleet.clock.advance(Duration::from_secs(31));
    let token = reused.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![token; 800]).await;
    assert_eq!(fleet.upstream.calls(), 3, "one refetch for the reused kid");
}

/// An operator's `refresh()` on one instance after an emergency rotation: one upstream fetch,
/// every other instance hears of the new set (no fetch of its own) and refuses the removed
/// key's tokens; a second `refresh()` elsewhere within the interval shares the first.
async fn forced_refresh(shared: Shared, clock: ManualClock) {
    let (compromised, kept) = (TestKey::ec_p256("k1"), TestKey::ed25519("k2"));
    let fleet = Fleet::start(
        4,
        &shared,
        clock,
        Upstream::expecting(&[&compromised, &kept], 2),
    )
    .await;
    let stolen = compromised.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![stolen.clone(); 4]).await;
    assert_eq!(fleet.upstream.calls(), 1);

    // Two minutes later the theft is found: the refreshed set, fetched after the stolen token
    // was issued (beyond the leeway), refuses it at once everywhere.
    fleet.upstream.publish(&[&kept]);
    fleet.clock.advance(2 * MINUTE);
    let mut others: Vec<_> = fleet.instances[1..]
        .iter()
        .map(Verifier::subscribe)
        .collect();
    let refreshed = fleet.instances[0].refresh().await.unwrap();
    assert!(refreshed.fetched);
    let fingerprint = refreshed.key_set.fingerprint();
    for events in &mut others {
        let heard = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.recv().await {
                    Ok(KeyEvent::KeySetChanged {
                        fingerprint: new,
                        removed,
                        ..
                    }) if new == fingerprint => {
                        return removed;
                    }
                    Ok(_) => {}
                    Err(error) => panic!("{error:?}"),
                }
            }
        })
        .await;
        assert_eq!(
            heard.expect("an instance never heard of the refresh"),
            ["k1"]
        );
    }
    for outcome in fleet.verify_all(&vec![stolen; 40]).await {
        assert!(
            matches!(
                outcome,
                Err(VerifyError::InvalidToken(InvalidToken::UnknownKid))
            ),
            "{outcome:?}"
        );
    }
    fleet
        .expect_valid(&vec![kept.sign(&claims(&fleet.clock)); 40])
        .await;
    let again = fleet.instances[3].refresh().await.unwrap();
    assert!(
        !again.fetched,
        "a second refresh within the interval fetched"
    );
    assert_eq!(again.key_set.fingerprint(), fingerprint);
    assert_eq!(fleet.upstream.calls(), 2, "one fetch for the refresh");
}

/// Instance A meets the new kid and fetches; B..H verify it with no upstream request, and hear
/// of the new set by invalidation.
async fn rotation_reaches_the_fleet(shared: Shared, clock: ManualClock) {
    let (old, new) = (TestKey::ec_p256("old"), TestKey::ed25519("new"));
    let fleet = Fleet::start(8, &shared, clock, Upstream::expecting(&[&old], 2)).await;
    let old_token = old.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![old_token; 8]).await;
    assert_eq!(fleet.upstream.calls(), 1);

    fleet.upstream.publish(&[&new]);
    let new_token = new.sign(&claims(&fleet.clock));
    fleet.instances[0]
        .verify::<Value>(&new_token)
        .await
        .unwrap();
    assert_eq!(fleet.upstream.calls(), 2);
    let new_set = fleet.instances[0].key_set().await.unwrap().fingerprint();

    // The others' near tiers are updated by the invalidation, without verifying anything.
    for instance in &fleet.instances[1..] {
        let heard = tokio::time::timeout(Duration::from_secs(3), async {
            while instance.key_set().await.unwrap().fingerprint() != new_set {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(heard.is_ok(), "an instance never heard of the new set");
    }
    fleet.expect_valid(&vec![new_token; 70]).await;
    assert_eq!(
        fleet.upstream.calls(),
        2,
        "the rotation cost more than one fetch"
    );
}

/// Inside the refresh-ahead window every instance refreshes in the background, and the
/// provider sees one request for the whole fleet; no verification waits for it.
async fn refresh_ahead_once_per_fleet(shared: Shared, clock: ManualClock) {
    let key = TestKey::ec_p256("k1");
    let fleet = Fleet::start(8, &shared, clock, Upstream::expecting(&[&key], 2)).await;
    let token = key.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![token.clone(); 8]).await;
    assert_eq!(fleet.upstream.calls(), 1);
    let fresh_until = |instance: &Verifier| match instance.health() {
        jwkstash::events::KeyHealth::Fresh { until } => Some(until),
        _ => None,
    };
    let first_until = fresh_until(&fleet.instances[0]).expect("a fresh set");
    // 9.5 minutes in: within the last minute of the 10-minute TTL.
    fleet.clock.advance(9 * MINUTE + Duration::from_secs(30));
    // The first hit starts the fleet's refresh in the background; it is held open.
    fleet.upstream.hold();
    fleet.instances[0].verify::<Value>(&token).await.unwrap();
    eventually("the refresh is in flight", || fleet.upstream.open() == 1).await;
    // Every instance verifies while that one request is still open: no hit waits for it.
    for instance in &fleet.instances {
        instance.verify::<Value>(&token).await.unwrap();
        assert_eq!(fleet.upstream.open(), 1, "the refresh ended before a hit");
    }
    fleet.upstream.release();
    // Wait until every instance holds the refreshed set (then none has a reason to fetch):
    // one fetch, the others read the shared tier.
    let refreshed = tokio::time::timeout(Duration::from_secs(5), async {
        while !fleet
            .instances
            .iter()
            .all(|instance| fresh_until(instance).is_some_and(|until| until > first_until))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        refreshed.is_ok(),
        "an instance never took the refreshed set"
    );
    assert_eq!(
        fleet.upstream.calls(),
        2,
        "refresh-ahead cost more than one fetch for the fleet"
    );
    // Past the old expiry nothing is refetched: the refreshed set is in use everywhere.
    fleet.clock.advance(MINUTE);
    fleet.expect_valid(&vec![token; 80]).await;
    assert_eq!(fleet.upstream.calls(), 2);
}

/// Every instance meets the new kid at once: still one refetch for the fleet, and every token
/// verifies (the instances that lose the claim wait for the one that fetches).
async fn simultaneous_rotation(shared: Shared, clock: ManualClock) {
    let (old, new) = (TestKey::ec_p256("old"), TestKey::ec_p256("new"));
    let fleet = Fleet::start(8, &shared, clock, Upstream::expecting(&[&old], 2)).await;
    let old_token = old.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![old_token; 8]).await;
    fleet.upstream.publish(&[&new]);
    let new_token = new.sign(&claims(&fleet.clock));
    let outcomes = fleet.verify_all(&vec![new_token; 400]).await;
    assert!(
        outcomes.iter().all(Result::is_ok),
        "{:?}",
        outcomes.iter().find(|o| o.is_err())
    );
    assert_eq!(fleet.upstream.calls(), 2);
}

/// Upstream requests through an outage, in real time scaled down twentyfold: 3 s of 500s
/// (a minute) after the set (fresh for 200 ms) went stale, backoff from 50 ms to 3 s (1 s to 60 s), each instance
/// verifying every 10 ms on its own schedule. `size` instances over `shared`, or one alone.
async fn requests_through_an_outage(size: usize, shared: Option<&Shared>) -> usize {
    let key = TestKey::ec_p256("k1");
    let clock = ManualClock::new(std::time::SystemTime::now());
    let upstream = Upstream::serving(&[&key]);
    let policy = FreshnessPolicy::default()
        .min_ttl(Duration::from_millis(100))
        .ttl(Duration::from_millis(200))
        .refresh_ahead(Duration::ZERO)
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_secs(3));
    let mut instances = Vec::new();
    for _ in 0..size {
        let mut builder = Verifier::builder()
            .key_source(upstream.source())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .clock(Arc::new(jwkstash_core::SystemClock))
            .lease_ttl(LEASE_TTL)
            .policy(policy.clone());
        if let Some(shared) = shared {
            builder = builder.shared_tier(shared.connect(&clock).await);
        }
        instances.push(builder.build().unwrap());
    }
    let token = key.sign(&claims(&clock));
    for instance in &instances {
        instance.verify::<Value>(&token).await.unwrap();
    }
    // The provider fails from now on; the set goes stale 200 ms after the warm-up.
    upstream.fail();
    let before = upstream.calls();
    let tasks: Vec<_> = instances
        .into_iter()
        .map(|instance| {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..10))).await;
                let until = Instant::now() + Duration::from_millis(3200);
                while Instant::now() < until {
                    instance.verify::<Value>(&token).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    upstream.calls() - before
}

async fn fleet_wide_backoff(shared: Shared) {
    let alone = requests_through_an_outage(1, None).await;
    let fleet = requests_through_an_outage(8, Some(&shared)).await;
    eprintln!("requests through the outage: one instance {alone}, eight {fleet}");
    assert!(
        alone >= 4,
        "one instance asked {alone} times: the outage was not exercised"
    );
    assert!(
        fleet * 2 <= alone * 3,
        "8 instances asked {fleet} times where one asks {alone}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_the_provider_what_one_instance_costs_on_the_memory_tier() {
    // This scenario runs on the system clock, and so does the shared tier's expiry.
    let tier = MemoryCache::builder()
        .clock(Arc::new(jwkstash_core::SystemClock))
        .build();
    fleet_wide_backoff(Shared::Memory(tier)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_the_provider_what_one_instance_costs_on_redis() {
    let Some(redis) = with_redis().await else {
        return;
    };
    fleet_wide_backoff(Shared::redis(redis.url())).await;
}

/// A fleet whose instances read a failover pair: with the primary down, one request reaches
/// the secondary for the whole fleet, and every instance verifies.
async fn failover_in_a_fleet(shared: Shared, clock: ManualClock) {
    let key = TestKey::ec_p256("k1");
    let (primary, secondary) = (
        Upstream::expecting(&[&key], 1),
        Upstream::expecting(&[&key], 1),
    );
    primary.fail();
    let configure = || {
        Verifier::builder()
            .key_source(jwkstash::source::Failover::new(
                primary.source(),
                secondary.source(),
            ))
            .issuer(ISSUER)
            .audience(AUDIENCE)
    };
    let fleet = Fleet::start_with(4, &shared, clock, secondary.clone(), configure).await;
    fleet
        .expect_valid(&vec![key.sign(&claims(&fleet.clock)); 400])
        .await;
    assert_eq!((primary.calls(), fleet.upstream.calls()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_source_serves_a_fleet_on_the_memory_tier() {
    let clock = ManualClock::default();
    failover_in_a_fleet(Shared::memory(&clock), clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_source_serves_a_fleet_on_redis() {
    let Some(redis) = with_redis().await else {
        return;
    };
    failover_in_a_fleet(Shared::redis(redis.url()), ManualClock::default()).await;
}

/// 1,000 tenants of one provider across a fleet: one template verifier per instance, one
/// shared entry, one upstream fetch for all of them.
async fn tenants_in_a_fleet(shared: Shared, clock: ManualClock) {
    const ENTRA: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    let key = TestKey::ec_p256("common");
    let upstream = Upstream::expecting(&[&key], 1);
    let configure = || {
        Verifier::builder()
            .key_source(upstream.source())
            .issuer_template(jwkstash::issuers::IssuerTemplate::new(ENTRA, "tid").unwrap())
            .audience(AUDIENCE)
    };
    let fleet = Fleet::start_with(4, &shared, clock, upstream.clone(), configure).await;
    let tokens: Vec<String> = (0..1000)
        .map(|n| {
            let tid = format!("tenant-{n:04}");
            let mut claims = claims(&fleet.clock);
            claims["iss"] = json!(ENTRA.replace("{tenantid}", &tid));
            claims["tid"] = json!(tid);
            key.sign(&claims)
        })
        .collect();
    fleet.expect_valid(&tokens).await;
    assert_eq!(
        fleet.upstream.calls(),
        1,
        "one fetch for 1,000 tenants on 4 instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tenants_cost_one_fetch_for_the_fleet_on_the_memory_tier() {
    let clock = ManualClock::default();
    tenants_in_a_fleet(Shared::memory(&clock), clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tenants_cost_one_fetch_for_the_fleet_on_redis() {
    let Some(redis) = with_redis().await else {
        return;
    };
    tenants_in_a_fleet(Shared::redis(redis.url()), ManualClock::default()).await;
}

// ---------------------------------------------------------------- every scenario on every tier

/// For each scenario, a module with one test per tier: the in-process shared tier, one
/// `redis-server`, a master behind a Sentinel, and a three-node Redis Cluster.
macro_rules! on_every_tier {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let clock = ManualClock::default();
                super::$scenario(Shared::memory(&clock), clock).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let Some(redis) = with_redis().await else { return };
                super::$scenario(Shared::redis(redis.url()), ManualClock::default()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_tls() {
                let TestCa { ca, cert, key } = TestCa::new();
                let Some(redis) = RedisServer::start_tls(&cert, &key).await else { return };
                let shared = Shared::redis_tls(redis.tls_url().unwrap(), ca);
                super::$scenario(shared, ManualClock::default()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sentinel() {
                let Some(sentinel) = RedisSentinel::start().await else { return };
                super::$scenario(Shared::redis(sentinel.url()), ManualClock::default()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                let Some(cluster) = RedisCluster::start().await else { return };
                super::$scenario(Shared::redis(cluster.url()), ManualClock::default()).await;
            }
        }
    )*};
}

on_every_tier!(
    cold_start_and_expiry,
    refresh_ahead_once_per_fleet,
    unknown_kid_flood,
    reused_kid,
    forced_refresh,
    rotation_reaches_the_fleet,
    simultaneous_rotation,
);

// ---------------------------------------------------------------- Redis faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_each_instance_works_alone() {
    let Some(mut redis) = with_redis().await else {
        return;
    };
    redis.kill().await;
    let key = TestKey::ec_p256("k1");
    let clock = ManualClock::default();
    let fleet = Fleet::start(
        3,
        &Shared::redis(redis.url()),
        clock,
        Upstream::serving(&[&key]),
    )
    .await;
    let token = key.sign(&claims(&fleet.clock));
    fleet.expect_valid(&vec![token; 30]).await;
    // Like single instances: one fetch each at most.
    assert!(
        (1..=3).contains(&fleet.upstream.calls()),
        "{}",
        fleet.upstream.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_never_fails_a_verification() {
    let Some(mut redis) = with_redis().await else {
        return;
    };
    let key = TestKey::ec_p256("k1");
    let clock = ManualClock::default();
    let shared = Shared::redis(redis.url());
    let fleet = Fleet::start(3, &shared, clock.clone(), Upstream::serving(&[&key])).await;
    let token = key.sign(&claims(&clock));
    fleet.expect_valid(&vec![token.clone(); 30]).await;
    assert_eq!(fleet.upstream.calls(), 1);

    redis.kill().await;
    clock.advance(11 * MINUTE);
    let outcomes = fleet.verify_all(&vec![token.clone(); 30]).await;
    assert!(
        outcomes.iter().all(Result::is_ok),
        "a verification failed while Redis was down"
    );
    // Each stale instance refreshes in the background: wait until those refreshes ended.
    fleet.until_all_fresh().await;
    let while_down = fleet.upstream.calls();
    // The warm-up, and at most one fetch of its own per instance while Redis is down.
    assert!((1..=1 + 3).contains(&while_down), "{while_down}");

    redis.restart().await;
    let Shared::Redis { url, prefix, .. } = &shared else {
        unreachable!()
    };
    let probe = redis_handle(url, prefix, None, &clock).await;
    wait_until_reachable(&probe, &clock).await;
    fleet.wait_until_reconnected().await;
    clock.advance(11 * MINUTE);
    fleet.expect_valid(&vec![token; 30]).await;
    fleet.until_all_fresh().await;
    assert_eq!(
        fleet.upstream.calls(),
        while_down + 1,
        "the shared tier was not used again"
    );
}

async fn wait_until_reachable(probe: &RedisCache, clock: &ManualClock) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while probe
            .claim_period("probe", "up", clock.now(), Duration::ZERO)
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "redis never came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_keeps_verification_within_the_deadline() {
    let Some(redis) = with_redis().await else {
        return;
    };
    let key = TestKey::ec_p256("k1");
    let clock = ManualClock::default();
    let fleet = Fleet::start(
        2,
        &Shared::redis(redis.url()),
        clock.clone(),
        Upstream::serving(&[&key]),
    )
    .await;
    let token = key.sign(&claims(&clock));
    fleet.instances[0].verify::<Value>(&token).await.unwrap();
    redis.cli(&["CLIENT", "PAUSE", "5000", "ALL"]).await;
    clock.advance(11 * MINUTE);
    for instance in &fleet.instances {
        let started = Instant::now();
        instance.verify::<Value>(&token).await.unwrap();
        // A few calls at the 250 ms deadline, then the circuit opens; plus the fetch itself.
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaseholder_delays_the_fleet_by_at_most_the_lease_ttl() {
    let Some(redis) = with_redis().await else {
        return;
    };
    let key = TestKey::ec_p256("k1");
    let clock = ManualClock::default();
    let shared = Shared::redis(redis.url());
    let fleet = Fleet::start(2, &shared, clock.clone(), Upstream::serving(&[&key])).await;
    let token = key.sign(&claims(&clock));
    fleet.instances[0].verify::<Value>(&token).await.unwrap();
    let entry_key = redis.cli(&["--scan", "--pattern", "fleet-*:entry"]).await;
    let cache_key = entry_key
        .trim()
        .split(['{', '}'])
        .nth(1)
        .expect("the entry's key")
        .to_owned();

    // A pod takes the lease for the next fetch and dies without delivering.
    let Shared::Redis { url, prefix, .. } = &shared else {
        unreachable!()
    };
    let dead_pod = redis_handle(url, prefix, None, &clock).await;
    clock.advance(11 * MINUTE);
    assert!(
        dead_pod
            .acquire(&cache_key, LEASE_TTL)
            .await
            .unwrap()
            .is_some()
    );

    // The stale set serves at once, while the dead pod still holds the lease; the background
    // refresh waits for the lease to end and then fetches for the fleet.
    let started = Instant::now();
    fleet.instances[1].verify::<Value>(&token).await.unwrap();
    let lease_ms: i64 = redis
        .cli(&["PTTL", &format!("{prefix}:{{{cache_key}}}:lease")])
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(
        lease_ms > 0,
        "the verification waited for the lease ({lease_ms} ms left)"
    );
    eventually("another instance took over the fetch", || {
        fleet.upstream.calls() == 2
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= LEASE_TTL - Duration::from_millis(100),
        "did not wait for the lease: {waited:?}"
    );
    assert!(
        waited < 2 * LEASE_TTL + FETCH_TIME * 3,
        "waited too long: {waited:?}"
    );
    fleet.instances[1].verify::<Value>(&token).await.unwrap();
    assert_eq!(fleet.upstream.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_key_set_with_a_bad_mac_is_never_trusted() {
    let Some(redis) = with_redis().await else {
        return;
    };
    let (ours, attackers) = (TestKey::ec_p256("k1"), TestKey::ec_p256("k1"));
    let clock = ManualClock::default();
    let shared = Shared::redis(redis.url());
    let fleet = Fleet::start(1, &shared, clock.clone(), Upstream::serving(&[&ours])).await;
    fleet.instances[0]
        .verify::<Value>(&ours.sign(&claims(&clock)))
        .await
        .unwrap();
    let entry_key = redis.cli(&["--scan", "--pattern", "fleet-*:entry"]).await;
    let cache_key = entry_key
        .trim()
        .split(['{', '}'])
        .nth(1)
        .unwrap()
        .to_owned();

    // The attacker can write to Redis but does not know the service's secret.
    let Shared::Redis { url, prefix, .. } = &shared else {
        unreachable!()
    };
    let attacker = RedisCache::builder()
        .url(url.as_str())
        .prefix(prefix.as_str())
        .hmac_secret(b"the attacker's guess at a secret".to_vec())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    let planted = jwkstash::keys::KeySet::parse(jwks(&[&attackers]).to_string()).unwrap();
    let now = clock.now();
    let entry = jwkstash::tier::Entry::new(
        Arc::new(planted),
        now,
        now + MINUTE * 60,
        now + MINUTE * 120,
    );
    jwkstash::tier::Cache::put(&attacker, &cache_key, entry)
        .await
        .unwrap();

    // A new instance with a cold near tier reads the shared tier: the planted set is refused.
    let newcomer = instance(&fleet.upstream, shared.connect(&clock).await, &clock);
    let forged = attackers.sign(&claims(&clock));
    let error = newcomer.verify::<Value>(&forged).await.unwrap_err();
    assert!(
        matches!(error, VerifyError::InvalidToken(InvalidToken::BadSignature)),
        "{error:?}"
    );
    newcomer
        .verify::<Value>(&ours.sign(&claims(&clock)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_kids_never_reach_a_redis_key() {
    let Some(redis) = with_redis().await else {
        return;
    };
    let key = TestKey::ec_p256("k1");
    let clock = ManualClock::default();
    let shared = Shared::redis(redis.url());
    let fleet = Fleet::start(2, &shared, clock.clone(), Upstream::serving(&[&key])).await;
    let claims = claims(&clock);
    let kids = [
        "../../etc/passwd",
        "a\r\nDEL *",
        "nul\u{0}byte",
        "{hash}tag",
        "*",
        "k1 ",
        "€uro",
    ];
    for (i, kid) in kids.iter().enumerate() {
        let token = key.sign_with_header(&json!({ "alg": "ES256", "kid": kid }), &claims);
        let error = fleet.instances[i % 2]
            .verify::<Value>(&token)
            .await
            .unwrap_err();
        assert!(error.is_invalid_token(), "{error:?}");
        // Past the cooldown, so that every kid reaches the refetch path.
        clock.advance(Duration::from_secs(31));
    }
    let Shared::Redis { prefix, .. } = &shared else {
        unreachable!()
    };
    let keys = redis.cli(&["--scan", "--pattern", "*"]).await;
    let keys: Vec<&str> = keys.lines().filter(|line| !line.is_empty()).collect();
    assert!(keys.len() >= 2, "nothing reached Redis: {keys:?}");
    // The directory of entries is one hash whose fields are entry names (hashes), no kid.
    let directory = format!("{prefix}:directory");
    let fields = redis.cli(&["hkeys", &directory]).await;
    for field in fields.lines().filter(|line| !line.is_empty()) {
        let hash = field
            .strip_prefix("jwks:")
            .unwrap_or_else(|| panic!("{field:?}"));
        assert!(
            hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{field:?}"
        );
    }
    for redis_key in keys.into_iter().filter(|key| *key != directory) {
        let rest = redis_key
            .strip_prefix(&format!("{prefix}:{{jwks:"))
            .unwrap_or_else(|| panic!("{redis_key:?}"));
        let (hash, part) = rest.split_once("}:").unwrap();
        assert!(
            hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{redis_key:?}"
        );
        assert!(
            part.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-:".contains(&b)),
            "{redis_key:?}"
        );
    }
}
