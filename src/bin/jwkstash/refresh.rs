//! `jwkstash refresh`: an operator's emergency refresh of a fleet that shares a Redis tier.
//!
//! The command does not rebuild the entry's name from its flags (pinned keys, a failover, an
//! issuer template or another spelling of the issuer would name another entry): it reads the
//! entries the fleet's verifiers announced in the tier's directory, picks the one of the issuer
//! (refusing an absent or ambiguous one with exit 2), and asks the verifiers that read it to
//! refresh it with their own settings. One of them fetches for the fleet; every instance takes
//! the new set from the tier.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jwkstash::RedisCache;
use jwkstash::clock::unix_millis;
use jwkstash::issuers::IssuerTemplate;
use jwkstash::keys::KeySet;
use jwkstash::tier::{Cache, Directory, FORCED_REFRESH_SLOT, Invalidation, Invalidations, Lease};
use serde_json::Value;

use crate::Failure;

/// The environment variable that holds the fleet's HMAC secret.
const SECRET_ENV: &str = "JWKSTASH_HMAC_SECRET";
/// A forced refresh this long before the request answers it: the fleet shares forced refreshes
/// within `min_refresh_interval` (5 s by default) and makes no other.
const SHARED_WITHIN: Duration = Duration::from_secs(5);

/// Which fleet, and which of its entries.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The Redis URL of the fleet (redis://, rediss://, redis-cluster://, redis-sentinel://).
    #[arg(long)]
    redis: String,
    /// The key prefix the fleet uses in Redis.
    #[arg(long, default_value = "jwkstash")]
    prefix: String,
    /// The issuer whose entry to refresh: one the fleet's verifiers accept, any spelling of
    /// it they list, or an issuer their template matches.
    #[arg(long, required_unless_present_any = ["entry", "list"])]
    issuer: Option<String>,
    /// The entry to refresh, by the name `--list` shows (when an issuer names several).
    #[arg(long, conflicts_with = "issuer")]
    entry: Option<String>,
    /// Refresh every entry the issuer names, instead of refusing an ambiguous issuer.
    #[arg(long)]
    all: bool,
    /// List the entries the fleet announced, and refresh nothing.
    #[arg(long)]
    list: bool,
    /// Entries not announced within this many seconds are taken as gone (no live verifier).
    #[arg(long, default_value_t = 86_400)]
    within: u64,
    /// How long to wait for the fleet's refresh, in seconds.
    #[arg(long, default_value_t = 15)]
    wait: u64,
    /// Delete the shared entry instead of replacing it (each instance keeps its own copy until
    /// it refreshes; prefer the default, which replaces the set everywhere).
    #[arg(long)]
    drop: bool,
}

/// An entry of the directory: its name and what the fleet said it holds.
struct Announced {
    entry: String,
    issuers: Vec<String>,
    template: Option<(String, String)>,
    source: String,
    announced_at: u64,
}

impl Announced {
    fn parse(entry: String, about: &str) -> Option<Self> {
        let about: Value = serde_json::from_str(about).ok()?;
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let template = about["template"]
            .as_str()
            .zip(about["claim"].as_str())
            .map(|(template, claim)| (template.to_owned(), claim.to_owned()));
        Some(Self {
            entry,
            issuers: strings(&about["issuers"]),
            template,
            source: about["source"].as_str().unwrap_or_default().to_owned(),
            announced_at: about["announced_at"].as_u64().unwrap_or(0),
        })
    }

    /// Whether `issuer` names this entry: one of its issuers byte for byte, its template as
    /// written, or an issuer its template matches.
    fn names(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|own| own == issuer)
            || self.template.as_ref().is_some_and(|(template, claim)| {
                template == issuer
                    || IssuerTemplate::new(template.as_str(), claim.as_str())
                        .is_ok_and(|template| template.matches(issuer))
            })
    }

    fn describe(&self, now: u64) -> String {
        let mut names = self.issuers.clone();
        names.extend(self.template.iter().map(|(template, _)| template.clone()));
        let age = now.saturating_sub(self.announced_at) / 1000;
        format!(
            "{}  issuers: {}  source: {}  announced {age} s ago",
            self.entry,
            names.join(", "),
            self.source
        )
    }
}

pub(crate) async fn run(args: &Args) -> Result<(), Failure> {
    let secret = std::env::var(SECRET_ENV)
        .map_err(|_| (2, format!("{SECRET_ENV} must hold the fleet's HMAC secret")))?;
    let tier = RedisCache::builder()
        .url(args.redis.as_str())
        .prefix(args.prefix.as_str())
        .hmac_secret(secret.into_bytes())
        .build()
        .await
        .map_err(|error| (2, format!("cannot reach {}: {error}", args.redis)))?;
    let now = unix_millis(SystemTime::now());
    let announced = tier
        .announced()
        .await
        .map_err(|error| (2, format!("cannot read the fleet's directory: {error}")))?;
    let mut live: Vec<Announced> = announced
        .into_iter()
        .filter_map(|(entry, about)| Announced::parse(entry, &about))
        .filter(|announced| {
            now.saturating_sub(announced.announced_at) <= args.within.saturating_mul(1000)
        })
        .collect();
    live.sort_by(|a, b| a.entry.cmp(&b.entry));
    if args.list {
        for announced in &live {
            println!("{}", announced.describe(now));
        }
        return Ok(());
    }
    let chosen = choose(args, &live, now)?;
    for announced in chosen {
        if args.drop {
            Cache::<Arc<KeySet>>::remove(&tier, &announced.entry)
                .await
                .map_err(|error| (2, format!("could not delete the shared entry: {error}")))?;
            println!("dropped the shared key set {}", announced.entry);
        } else {
            refresh(&tier, &announced.entry, Duration::from_secs(args.wait)).await?;
        }
    }
    Ok(())
}

/// The entries the arguments name; an absent or (without --all) ambiguous one is exit 2,
/// with what the directory holds.
fn choose<'a>(args: &Args, live: &'a [Announced], now: u64) -> Result<Vec<&'a Announced>, Failure> {
    let listing = |entries: &mut dyn Iterator<Item = &Announced>| {
        entries
            .map(|announced| format!("  {}", announced.describe(now)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (what, matches): (String, Vec<&Announced>) = match (&args.entry, &args.issuer) {
        (Some(entry), _) => (
            format!("entry {entry}"),
            live.iter()
                .filter(|announced| &announced.entry == entry)
                .collect(),
        ),
        (None, Some(issuer)) => (
            format!("issuer {issuer}"),
            live.iter()
                .filter(|announced| announced.names(issuer))
                .collect(),
        ),
        (None, None) => return Err((2, "name an --issuer or an --entry".into())),
    };
    match matches.len() {
        0 => Err((
            2,
            format!(
                "no verifier of the fleet announced an entry for {what} (within {} s); the \
                 directory holds:\n{}",
                args.within,
                listing(&mut live.iter())
            ),
        )),
        1 => Ok(matches),
        _ if args.all => Ok(matches),
        _ => Err((
            2,
            format!(
                "{what} names {} entries; refresh one with --entry, or all with --all:\n{}",
                matches.len(),
                listing(&mut matches.iter().copied())
            ),
        )),
    }
}

/// Asks the fleet to refresh `entry` and waits until a set fetched since is in the tier, or
/// the fleet's last forced refresh of it (within the interval it shares them) is.
async fn refresh(tier: &RedisCache, entry: &str, wait: Duration) -> Result<(), Failure> {
    let requested_at = SystemTime::now();
    let mut heard = tier.subscribe();
    tier.publish(Invalidation::refresh_request(entry))
        .await
        .map_err(|error| (2, format!("cannot ask the fleet: {error}")))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let held = Cache::<Arc<KeySet>>::get(tier, entry)
            .await
            .map_err(|error| (2, format!("cannot read the shared entry: {error}")))?;
        let forced = tier
            .last_claimed(entry, FORCED_REFRESH_SLOT)
            .await
            .map_err(|error| (2, format!("cannot read the shared entry: {error}")))?;
        if let Some(held) = held {
            if held.fetched_at >= requested_at {
                println!("fetched: {}", summary(entry, &held.value));
                return Ok(());
            }
            if forced.is_some_and(|forced| {
                forced + SHARED_WITHIN >= requested_at && held.fetched_at >= forced
            }) {
                println!(
                    "already refreshed within the interval: {}",
                    summary(entry, &held.value)
                );
                return Ok(());
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err((
                2,
                format!(
                    "no verifier of the fleet refreshed {entry} within {} s: is one running \
                     with this prefix and secret, and does its provider answer?",
                    wait.as_secs()
                ),
            ));
        }
        // Woken by the fleet's message about the entry, or after a short pause.
        let pause = Duration::from_millis(100).min(deadline - now);
        let _ = tokio::time::timeout(pause, heard.recv()).await;
    }
}

fn summary(entry: &str, set: &KeySet) -> String {
    let mut kids: Vec<&str> = set.keys().iter().filter_map(|key| key.kid()).collect();
    kids.sort_unstable();
    format!(
        "entry {entry}, fingerprint {:016x}, kids: {}",
        set.fingerprint(),
        kids.join(", ")
    )
}
