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
//! JWKSTASH_HMAC_SECRET=... jwkstash refresh --redis redis://... --list
//! ```
//!
//! Exit codes: 0 success, 1 the token is invalid, 2 the keys could not be obtained or bad usage.

#[cfg(feature = "redis")]
mod refresh;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jwkstash::keys::{KeyKind, KeySet};
use jwkstash::source::{DiscoverySource, HttpKeySource, KeySource, Validators};
use jwkstash::{Verifier, VerifyError};
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
    /// Asks a fleet sharing a Redis tier to fetch an issuer's keys now: the entry is the one
    /// the fleet's verifiers announced for that issuer, and they refresh it with their own
    /// settings (one fetch for the fleet); every instance then drops the old set. Or, with
    /// --drop, deletes the shared entry.
    #[cfg(feature = "redis")]
    Refresh(refresh::Args),
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

/// An exit code and what to print.
pub(crate) type Failure = (u8, String);

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
        Ok(jwkstash::source::Fetched::Modified { body, .. }) => body,
        Ok(jwkstash::source::Fetched::NotModified { .. }) => {
            return Err((2, "unexpected 304".into()));
        }
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
        Err(error) => Err((2, with_causes(&error))),
    }
}

/// `error` and its causes (the ones its message does not already carry), joined.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
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
        Command::Refresh(args) => refresh::run(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}
