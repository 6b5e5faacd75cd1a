//! The fleet as separate OS processes over one real `redis-server` and one provider on
//! 127.0.0.1: the instance holding the fleet's fetch is SIGKILLed while the provider hangs its
//! request, and the rest of the fleet recovers on its own once the lease ends; a live holder
//! whose fetch is slow keeps its lease, and the fleet fetches once.
//!
//! Each instance is this test binary run again as `member` (an ignored test that acts only
//! when spawned with `JWKSTASH_FLEET_MEMBER`): it verifies the tokens it reads on stdin and
//! answers `@@ ok` or `@@ err <code>` on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/process.rs"]
mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwkstash::source::HttpKeySource;
use jwkstash::testkit::{Behaviour, Idp, TestKey, eventually};
use jwkstash::{FreshnessPolicy, RedisCache, Verifier};
use jwkstash_redis::testkit::RedisServer;
use process::{VerifierProcess, text};

const MEMBER_ENV: &str = "JWKSTASH_FLEET_MEMBER";
const LEASE_TTL: Duration = Duration::from_secs(1);
const SECRET: &str = "the fleet's secret, from the environment";

/// The member process: one verifier over the shared Redis, driven by stdin.
#[test]
#[ignore = "runs only as a spawned fleet member"]
fn member() {
    process::serve(MEMBER_ENV, |config| async move {
        let redis = RedisCache::builder()
            .url(text(&config, "redis_url"))
            .prefix(text(&config, "prefix"))
            .hmac_secret(SECRET.as_bytes().to_vec())
            .build()
            .await
            .unwrap();
        // A fetch deadline far beyond the test: only the provider ends a hung request.
        let source = HttpKeySource::builder(text(&config, "jwks_url"))
            .allow_http(true)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let builder = Verifier::builder()
            .key_source(source)
            .issuer(text(&config, "issuer"))
            .audience(text(&config, "audience"))
            .shared_tier(Arc::new(redis));
        // `ttl_ms` absent: every verifier setting at its default (lease TTL, policy).
        let Some(ttl) = config["ttl_ms"].as_u64().map(Duration::from_millis) else {
            return builder.build().unwrap();
        };
        builder
            .lease_ttl(LEASE_TTL)
            .policy(
                FreshnessPolicy::default()
                    .min_ttl(ttl.min(Duration::from_secs(60)))
                    .ttl(ttl)
                    .refresh_ahead(ttl / 2)
                    .unknown_kid_wait(Duration::from_millis(200)),
            )
            .build()
            .unwrap()
    });
}

/// Starts a member process over `redis` (under `prefix`) and `idp`.
async fn spawn_member(
    redis: &RedisServer,
    idp: &Idp,
    prefix: &str,
    ttl: Option<Duration>,
) -> VerifierProcess {
    let config = serde_json::json!({
        "redis_url": redis.url(),
        "prefix": prefix,
        "jwks_url": idp.jwks_url(),
        "issuer": idp.issuer(),
        "audience": idp.audience(),
        "ttl_ms": ttl.map(|ttl| ttl.as_millis() as u64),
    });
    VerifierProcess::spawn("member", MEMBER_ENV, &config).await
}

struct Fleet {
    redis: RedisServer,
    idp: Idp,
    members: Vec<VerifierProcess>,
}

impl Fleet {
    /// `size` members, warmed with one valid token each: one upstream request in all. With
    /// `ttl`, the members have that TTL and short test settings; without, every default.
    async fn start(size: usize, ttl: Option<Duration>) -> Option<Self> {
        let redis = RedisServer::start().await?;
        let idp = Idp::builder()
            .key(TestKey::ec_p256("key-1"))
            .start()
            .await
            .unwrap();
        let prefix = format!("processes-{:08x}", fastrand::u32(..));
        let mut members = Vec::new();
        for _ in 0..size {
            members.push(spawn_member(&redis, &idp, &prefix, ttl).await);
        }
        let mut fleet = Self {
            redis,
            idp,
            members,
        };
        let token = fleet.idp.mint();
        for member in &mut fleet.members {
            assert_eq!(member.verify(&token).await, "ok");
        }
        assert_eq!(fleet.idp.jwks_requests(), 1, "cold start");
        Some(fleet)
    }

    /// Every remaining member verifies `token` `rounds` times; all must accept it.
    async fn expect_valid(&mut self, token: &str, rounds: usize) {
        for _ in 0..rounds {
            for (i, member) in self.members.iter_mut().enumerate() {
                let answer = member.verify(token).await;
                assert_eq!(answer, "ok", "member {i} refused a valid token");
            }
        }
    }
}

/// Fails the test when the fleet has not recovered long after the lease ended.
fn still_recovering(killed: Instant) {
    assert!(
        killed.elapsed() < LEASE_TTL + Duration::from_secs(10),
        "the fleet never recovered from the SIGKILL"
    );
}

/// Reports how long recovery took after the SIGKILL: within the lease TTL plus one fetch (and
/// the slack of a loaded machine).
fn recovered(killed: Instant, what: &str) {
    let recovery = killed.elapsed();
    eprintln!("{what} {recovery:?} after the SIGKILL (lease TTL {LEASE_TTL:?})");
    assert!(
        recovery < LEASE_TTL + Duration::from_secs(3),
        "{what} only after {recovery:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_of_the_unknown_kid_refetch_does_not_block_the_new_key() {
    let Some(mut fleet) = Fleet::start(4, Some(Duration::from_secs(600))).await else {
        return;
    };
    // The provider rotates; the first member to see the new kid holds the fleet's refetch,
    // and the provider hangs its request.
    fleet.idp.set_behaviour(Behaviour::Hang);
    fleet.idp.rotate(TestKey::ec_p256("key-2"));
    let rotated = fleet.idp.mint();
    let holder = fleet.members.remove(0);
    let mut holder = holder;
    assert_eq!(holder.verify(&rotated).await, "err unavailable");
    eventually("the holder's request hangs", || {
        fleet.idp.open_requests() == 1
    })
    .await;
    assert_eq!(fleet.idp.jwks_requests(), 2);
    holder.kill().await;
    let killed = Instant::now();
    fleet.idp.set_behaviour(Behaviour::Serve);
    // The rest of the fleet asks for the new kid until every member accepts it.
    let mut accepted = vec![false; fleet.members.len()];
    while accepted.contains(&false) {
        still_recovering(killed);
        for (i, member) in fleet.members.iter_mut().enumerate() {
            match member.verify(&rotated).await.as_str() {
                "ok" => accepted[i] = true,
                "err unavailable" => assert!(!accepted[i], "member {i} went back"),
                other => panic!("member {i} refused the new key: {other}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recovered(killed, "the new key accepted fleet-wide");
    // After recovery no valid token is refused, and nothing more is fetched.
    fleet.expect_valid(&rotated, 20).await;
    assert_eq!(
        fleet.idp.jwks_requests(),
        3,
        "cold start, the hung refetch, one refetch after the lease"
    );
    drop(fleet.redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_refresh_ahead_leaseholder_is_replaced_when_its_lease_ends() {
    // Sets fresh for 2 s, refreshed ahead from 1 s.
    let ttl = Duration::from_secs(2);
    let Some(mut fleet) = Fleet::start(4, Some(ttl)).await else {
        return;
    };
    let warmed = Instant::now();
    let token = fleet.idp.mint();
    fleet.idp.set_behaviour(Behaviour::Hang);
    tokio::time::sleep((ttl / 2 + Duration::from_millis(100)).saturating_sub(warmed.elapsed()))
        .await;
    // The first member in the refresh-ahead window takes the lease; its request hangs.
    let mut holder = fleet.members.remove(0);
    assert_eq!(holder.verify(&token).await, "ok");
    eventually("the holder's refresh hangs", || {
        fleet.idp.open_requests() == 1
    })
    .await;
    assert_eq!(fleet.idp.jwks_requests(), 2);
    holder.kill().await;
    let killed = Instant::now();
    fleet.idp.set_behaviour(Behaviour::Serve);
    // The others keep verifying (served fresh, then stale) while the dead holder's lease runs
    // out; then one of them refreshes for the fleet.
    while fleet.idp.jwks_requests() < 3 {
        still_recovering(killed);
        fleet.expect_valid(&token, 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recovered(killed, "the refresh taken over");
    fleet.expect_valid(&token, 10).await;
    assert_eq!(fleet.idp.jwks_requests(), 3);
}

/// Verifies `token` on every member at once, until each has accepted it; returns how long after
/// `since` each first did. A member may answer 503 meanwhile, never 401 and never go back.
async fn accepted_by_each(
    members: &mut [VerifierProcess],
    token: &str,
    since: Instant,
) -> Vec<Duration> {
    let mut accepted: Vec<Option<Duration>> = vec![None; members.len()];
    while accepted.contains(&None) {
        still_recovering(since);
        let answers = futures_util::future::join_all(
            members
                .iter_mut()
                .zip(&accepted)
                .filter(|(_, accepted)| accepted.is_none())
                .map(|(member, _)| member.verify(token)),
        )
        .await;
        let waiting = accepted.iter_mut().filter(|accepted| accepted.is_none());
        for (slot, answer) in waiting.zip(answers) {
            match answer.as_str() {
                "ok" => *slot = Some(since.elapsed()),
                "err unavailable" => {}
                other => panic!("a member refused the new key: {other}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    accepted.into_iter().flatten().collect()
}

/// Eight members with every default setting (lease TTL 1.5 s, renewed while held). The member
/// that takes the fleet's refetch for a rotated kid is SIGKILLed while the provider hangs its
/// request, after every other member has asked for the kid too: each of them accepts the new
/// key within 2 s of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_defaults_a_killed_holder_costs_the_fleet_at_most_two_seconds() {
    let Some(mut fleet) = Fleet::start(8, None).await else {
        return;
    };
    fleet.idp.set_behaviour(Behaviour::Hang);
    fleet.idp.rotate(TestKey::ec_p256("key-2"));
    let rotated = fleet.idp.mint();
    let mut holder = fleet.members.remove(0);
    assert_eq!(holder.verify(&rotated).await, "err unavailable");
    assert_eq!(fleet.idp.open_requests(), 1);
    // The others wait for the holder (503 after unknown_kid_wait), none fetches.
    let answers = futures_util::future::join_all(
        fleet
            .members
            .iter_mut()
            .map(|member| member.verify(&rotated)),
    )
    .await;
    assert!(
        answers.iter().all(|answer| answer == "err unavailable"),
        "{answers:?}"
    );
    assert_eq!(
        fleet.idp.jwks_requests(),
        2,
        "cold start and the holder's refetch"
    );
    holder.kill().await;
    let killed = Instant::now();
    fleet.idp.set_behaviour(Behaviour::Serve);
    let recovery = accepted_by_each(&mut fleet.members, &rotated, killed).await;
    let slowest = recovery.iter().max().copied().unwrap_or_default();
    eprintln!("the new key accepted by each member after the SIGKILL: {recovery:?}");
    assert!(
        slowest <= Duration::from_secs(2),
        "recovery took {slowest:?}"
    );
    fleet.expect_valid(&rotated, 5).await;
    assert_eq!(
        fleet.idp.jwks_requests(),
        3,
        "cold start, the hung refetch, one refetch after the lease"
    );
}

/// A live holder whose fetch takes three lease TTLs (4.5 s, every default otherwise) renews its
/// lease: the other members wait for its set, and the rotation costs one upstream request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_defaults_a_slow_live_holder_keeps_the_lease_and_the_fleet_fetches_once() {
    let Some(mut fleet) = Fleet::start(8, None).await else {
        return;
    };
    let lease_ttl = jwkstash::limits::DEFAULT_LEASE_TTL;
    fleet.idp.set_behaviour(Behaviour::Slow(3 * lease_ttl));
    fleet.idp.rotate(TestKey::ec_p256("key-2"));
    let rotated = fleet.idp.mint();
    let started = Instant::now();
    assert_eq!(fleet.members[0].verify(&rotated).await, "err unavailable");
    let recovery = accepted_by_each(&mut fleet.members, &rotated, started).await;
    eprintln!("the new key accepted by each member: {recovery:?}");
    assert!(
        recovery.iter().all(|took| *took >= 3 * lease_ttl),
        "accepted before the slow fetch ended: {recovery:?}"
    );
    fleet.expect_valid(&rotated, 5).await;
    assert_eq!(
        fleet.idp.jwks_requests(),
        2,
        "cold start and one refetch for the whole fleet"
    );
}
