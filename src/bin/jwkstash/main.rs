//! `jwkstash`: look at a provider's keys, or verify a token and see exactly why it is refused.
//!
//! ```text
//! jwkstash keys https://idp.example.com/                 # by OpenID Connect discovery
//! jwkstash keys https://idp.example.com/jwks.json        # a JWKS URL
//! jwkstash verify --issuer https://idp.example.com/ --aud my-api TOKEN
//!
//! # After an emergency rotation, with a fleet sharing Redis (feature `redis`); the fleet's
//! # HMAC secret comes from the environment, never from a flag:
//! JWKSTASH_HMAC_SECRET=... jwkstash refresh --redis redis://... --issuer https://idp.example.com/
//! ```
//!
//! Exit codes: 0 success, 1 the token is invalid, 2 the keys could not be obtained or bad usage.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jwkstash::{
    DiscoverySource, HttpKeySource, KeyKind, KeySet, KeySource, Validators, Verifier, VerifyError,
};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "jwkstash",
    version,
    about = "Inspect JWKS and verify JWTs with jwkstash"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists a provider's keys: kid, type, size, algorithm, and what is refused and why.
    Keys {
        /// An issuer URL (discovered) or a JWKS URL (ending in .json, or with --jwks).
        url: String,
        /// Treat the URL as a JWKS URL, not as an issuer.
        #[arg(long)]
        jwks: bool,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Verifies a token and prints its claims, or the exact reason it is refused.
    Verify {
        /// The issuer the token must name (its keys are found by discovery unless --jwks).
        #[arg(long)]
        issuer: String,
        /// An accepted audience (repeatable). Without one, the audience is not checked.
        #[arg(long = "aud")]
        audiences: Vec<String>,
        /// The JWKS URL, instead of discovery.
        #[arg(long)]
        jwks: Option<String>,
        /// Clock-skew allowance in seconds.
        #[arg(long, default_value_t = 60)]
        leeway: u64,
        #[command(flatten)]
        http: HttpArgs,
        /// The token.
        token: String,
    },
    /// Forces one fetch of an issuer's keys for a whole fleet sharing a Redis tier: every
    /// instance hears of the new set and drops the old one (within `min_refresh_interval`,
    /// one such refresh is shared by all). Or, with --drop, deletes the shared entry.
    #[cfg(feature = "redis")]
    Refresh {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Delete the shared entry instead of replacing it (each instance keeps its own copy
        /// until it refreshes; prefer the default, which replaces the set everywhere).
        #[arg(long)]
        drop: bool,
    },
}

/// How to reach a fleet's shared tier, and which key set there: the same issuer(s) and key
/// source as the fleet's verifiers, since they name the entry.
#[cfg(feature = "redis")]
#[derive(clap::Args)]
struct FleetArgs {
    /// The Redis URL of the fleet (redis://, rediss://, redis-cluster://, redis-sentinel://).
    #[arg(long)]
    redis: String,
    /// The key prefix the fleet uses in Redis.
    #[arg(long, default_value = "jwkstash")]
    prefix: String,
    /// The issuer (repeat it for every spelling the fleet's verifiers accept).
    #[arg(long = "issuer", required = true)]
    issuers: Vec<String>,
    /// The JWKS URL, if the fleet's verifiers use one instead of discovery.
    #[arg(long)]
    jwks: Option<String>,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(clap::Args)]
struct HttpArgs {
    /// Accept plain http:// URLs (for local providers only).
    #[arg(long)]
    allow_http: bool,
    /// Total deadline of a fetch, in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

type Failure = (u8, String);

fn source(url: &str, jwks: bool, http: &HttpArgs) -> Result<Arc<dyn KeySource>, Failure> {
    let timeout = Duration::from_secs(http.timeout.max(1));
    let built: Result<Arc<dyn KeySource>, _> = if jwks || url.ends_with(".json") {
        HttpKeySource::builder(url)
            .allow_http(http.allow_http)
            .timeout(timeout)
            .build()
            .map(|source| Arc::new(source) as Arc<dyn KeySource>)
    } else {
        DiscoverySource::builder(url)
            .allow_http(http.allow_http)
            .timeout(timeout)
            .build()
            .map(|source| Arc::new(source) as Arc<dyn KeySource>)
    };
    built.map_err(|error| (2, format!("cannot use {url}: {error}")))
}

async fn keys(url: &str, jwks: bool, http: &HttpArgs) -> Result<(), Failure> {
    let source = source(url, jwks, http)?;
    let body = match source.fetch(&Validators::default()).await {
        Ok(jwkstash::Fetched::Modified { body, .. }) => body,
        Ok(jwkstash::Fetched::NotModified { .. }) => return Err((2, "unexpected 304".into())),
        Err(error) => return Err((2, format!("fetch failed: {error}"))),
    };
    let (usable, skipped) =
        KeySet::explain(&body).map_err(|error| (2, format!("not a key set: {error}")))?;
    println!("{:<40} {:<12} {:<8} status", "kid", "type", "alg");
    for key in &usable {
        let alg = key
            .algorithm()
            .map_or("(any fit)".to_owned(), |alg| format!("{alg:?}"));
        let kind = match key.kind() {
            KeyKind::Rsa { bits } => format!("RSA-{bits}"),
            other => other.to_string(),
        };
        println!(
            "{:<40} {kind:<12} {alg:<8} usable",
            key.kid().unwrap_or("(none)")
        );
    }
    for skip in &skipped {
        println!(
            "{:<40} {:<12} {:<8} refused: {}",
            skip.kid.as_deref().unwrap_or("(none)"),
            "-",
            "-",
            skip.reason
        );
    }
    println!("{} usable, {} refused", usable.len(), skipped.len());
    if usable.is_empty() {
        return Err((1, "no usable key: jwkstash would refuse this set".into()));
    }
    Ok(())
}

async fn verify(
    issuer: &str,
    audiences: &[String],
    jwks: Option<&str>,
    leeway: u64,
    http: &HttpArgs,
    token: &str,
) -> Result<(), Failure> {
    let source = match jwks {
        Some(url) => source(url, true, http)?,
        None => source(issuer, false, http)?,
    };
    let mut builder = Verifier::builder()
        .key_source(source)
        .issuer(issuer)
        .leeway(Duration::from_secs(leeway));
    if audiences.is_empty() {
        eprintln!("note: no --aud given, the audience is not checked");
        builder = builder.any_audience();
    }
    for audience in audiences {
        builder = builder.audience(audience.as_str());
    }
    let verifier = builder
        .build()
        .map_err(|error| (2, format!("bad settings: {error}")))?;
    match verifier.verify::<Value>(token).await {
        Ok(claims) => {
            println!("valid");
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
            Ok(())
        }
        Err(VerifyError::InvalidToken(reason)) => {
            Err((1, format!("invalid token: {reason} ({})", reason.code())))
        }
        Err(error) => Err((2, format!("{error}: {}", source_chain(&error)))),
    }
}

/// The environment variable that holds the fleet's HMAC secret.
#[cfg(feature = "redis")]
const SECRET_ENV: &str = "JWKSTASH_HMAC_SECRET";

#[cfg(feature = "redis")]
async fn refresh(fleet: &FleetArgs, drop: bool) -> Result<(), Failure> {
    let secret = std::env::var(SECRET_ENV)
        .map_err(|_| (2, format!("{SECRET_ENV} must hold the fleet's HMAC secret")))?;
    let tier = jwkstash::RedisCache::builder()
        .url(fleet.redis.as_str())
        .prefix(fleet.prefix.as_str())
        .hmac_secret(secret.into_bytes())
        .build()
        .await
        .map_err(|error| (2, format!("cannot reach {}: {error}", fleet.redis)))?;
    let source = match &fleet.jwks {
        Some(url) => source(url, true, &fleet.http)?,
        None => source(&fleet.issuers[0], false, &fleet.http)?,
    };
    let mut builder = Verifier::builder()
        .key_source(source)
        .shared_tier(Arc::new(tier))
        .any_audience();
    for issuer in &fleet.issuers {
        builder = builder.issuer(issuer.as_str());
    }
    let verifier = builder
        .build()
        .map_err(|error| (2, format!("bad settings: {error}")))?;
    if drop {
        verifier
            .invalidate()
            .await
            .map_err(|error| (2, format!("could not delete the shared entry: {error}")))?;
        println!("dropped the shared key set");
        return Ok(());
    }
    let refreshed = verifier
        .refresh()
        .await
        .map_err(|error| (2, format!("{error}: {}", source_chain(&error))))?;
    let mut kids: Vec<&str> = refreshed
        .key_set
        .keys()
        .iter()
        .filter_map(|key| key.kid())
        .collect();
    kids.sort_unstable();
    let how = if refreshed.fetched {
        "fetched"
    } else {
        "already refreshed within the interval"
    };
    println!(
        "{how}: fingerprint {:016x}, kids: {}",
        refreshed.key_set.fingerprint(),
        kids.join(", ")
    );
    Ok(())
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut next = error.source();
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    causes.join(": ")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Keys { url, jwks, http } => keys(url, *jwks, http).await,
        Command::Verify {
            issuer,
            audiences,
            jwks,
            leeway,
            http,
            token,
        } => verify(issuer, audiences, jwks.as_deref(), *leeway, http, token).await,
        #[cfg(feature = "redis")]
        Command::Refresh { fleet, drop } => refresh(fleet, *drop).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}
