//! Shared leaves of every room: the error of building a verifier, and how durations are
//! written in messages.

use std::time::Duration;

use crate::jose::error::KeySetError;

/// A configuration that [`build`](crate::VerifierBuilder::build) refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No issuer was configured: tokens are bound to their issuer.
    #[error("an issuer is required")]
    MissingIssuer,
    /// No audience was configured and `any_audience()` was not called.
    #[error("an audience is required (or call any_audience())")]
    MissingAudience,
    /// No key source was configured.
    #[error("a key source is required: call jwks_url(), discover() or key_source()")]
    MissingKeySource,
    /// No near tier was configured and the `memory` feature (the default moka tier) is off.
    #[error(
        "an in-process tier is required: enable the `memory` feature or pass one to near_tier()"
    )]
    MissingCache,
    /// The URL does not parse or has no host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A plain `http://` URL, refused unless
    /// [`allow_http_loopback`](crate::VerifierBuilder::allow_http_loopback) was called and the
    /// host is this machine.
    #[error(
        "plain http refused for {0}: use https, or call allow_http_loopback() for a provider on this machine (it admits the loopback hosts localhost, 127.0.0.0/8 and ::1 only)"
    )]
    InsecureUrl(String),
    /// A setting is out of range; the message gives its value, the range and the defaults.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// Two builder calls that contradict each other, named in the order they were made (the
    /// later would silently replace or void the earlier): `jwks_url()`, `discover()` and
    /// `key_source()` each set where the keys come from, and `allow_http_loopback()` applies
    /// only to `jwks_url()` and `discover()`.
    #[error("{}", describe_conflict(.first, .second))]
    ConflictingCalls {
        /// The earlier call, such as `"jwks_url()"`.
        first: &'static str,
        /// The later call, such as `"key_source()"`.
        second: &'static str,
    },
    /// The pinned keys ([`VerifierBuilder::pinned_keys`](crate::VerifierBuilder::pinned_keys))
    /// are not a usable key set.
    #[error("pinned keys refused")]
    PinnedKeys(#[source] KeySetError),
    /// The snapshot directory ([`VerifierBuilder::snapshot_dir`](crate::VerifierBuilder::snapshot_dir))
    /// is missing, not a directory or not writable.
    #[cfg(feature = "file")]
    #[error("snapshot tier refused")]
    Snapshot(#[source] jwkstash_file::BuildError),
    /// The HTTP client could not be built.
    #[error("HTTP client could not be built")]
    Client(#[source] jwkstash_core::BoxError),
}

impl BuildError {
    /// An [`InvalidSetting`](Self::InvalidSetting) saying `why`.
    pub(crate) fn invalid_setting(why: impl Into<String>) -> Self {
        Self::InvalidSetting(why.into())
    }
}

fn describe_conflict(first: &str, second: &str) -> String {
    if first == "allow_http_loopback()" || second == "allow_http_loopback()" {
        return format!(
            "{first} and {second} cannot be combined: allow_http_loopback() applies to \
             jwks_url() and discover() only; for a source of your own, call \
             allow_http_loopback() on its builder (HttpKeySource::builder, \
             DiscoverySource::builder)"
        );
    }
    let calls = if first == second {
        format!("{first} was called twice")
    } else {
        format!("{first} and {second} each set where the keys come from")
    };
    format!(
        "{calls}: a verifier has one key source; call one of them once (for a second source \
         when the first fails, key_source(Failover::new(primary, secondary)))"
    )
}

/// A duration as the documentation writes it: `24 h`, `1 min`, `2 s`, `1.5 s`, `250 ms`.
pub(crate) fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() == 0 {
        return match seconds {
            0 => "0 s".to_owned(),
            s if s.is_multiple_of(3600) => format!("{} h", s / 3600),
            s if s.is_multiple_of(60) => format!("{} min", s / 60),
            s => format!("{s} s"),
        };
    }
    if seconds == 0 && duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{} ms", duration.subsec_millis());
    }
    format!("{} s", duration.as_secs_f64())
}
