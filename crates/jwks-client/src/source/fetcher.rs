//! The HTTP side shared by the key sources: one client with deadlines, a body cap, one careful
//! retry, same-origin redirects only, and conditional requests.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use jwkstash_core::{FetchError, Fetched, Validators};
use reqwest::header::{ACCEPT, AGE, CACHE_CONTROL, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH};
use reqwest::{StatusCode, Url, redirect};

use crate::error::BuildError;

/// Default connect deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default deadline for a whole fetch, retry included.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on the body, enforced while reading.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Redirects followed at most (and only within the origin of the requested URL).
const MAX_REDIRECTS: usize = 3;

/// Which plain `http://` URLs a source accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PlainHttp {
    /// https only.
    #[default]
    Never,
    /// http only to loopback hosts (`localhost`, 127.0.0.0/8, `::1`): local development.
    Loopback,
    /// http to any host (tests on loopback addresses that need no name check).
    Any,
}

/// The settings every HTTP key source shares.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub(crate) plain_http: PlainHttp,
    pub(crate) connect_timeout: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) max_body_bytes: usize,
    /// PEM certificates trusted beside the system's roots.
    pub(crate) roots: Vec<Vec<u8>>,
    pub(crate) client: Option<reqwest::Client>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            plain_http: PlainHttp::Never,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            roots: Vec::new(),
            client: None,
        }
    }
}

/// The setters of [`HttpOptions`], for each builder that has them.
macro_rules! http_option_setters {
    () => {
        /// Accepts plain `http://` URLs to any host. Meant for tests; never for a real
        /// provider. For a provider on this machine, prefer
        /// [`allow_http_loopback`](Self::allow_http_loopback).
        pub fn allow_http(mut self, allow: bool) -> Self {
            self.http.plain_http = if allow {
                $crate::source::fetcher::PlainHttp::Any
            } else {
                $crate::source::fetcher::PlainHttp::Never
            };
            self
        }

        /// Accepts plain `http://` URLs to loopback hosts only (`localhost`, 127.0.0.0/8,
        /// `::1`), for a provider running on this machine (a Keycloak in a container on
        /// `http://localhost:8080`). Any other host still needs https.
        pub fn allow_http_loopback(mut self) -> Self {
            if self.http.plain_http == $crate::source::fetcher::PlainHttp::Never {
                self.http.plain_http = $crate::source::fetcher::PlainHttp::Loopback;
            }
            self
        }

        /// The connect deadline (default 2 s). Ignored with a caller's `client`.
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.http.connect_timeout = timeout;
            self
        }

        /// The deadline of a whole fetch, retry included (default 5 s).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.http.total_timeout = timeout;
            self
        }

        /// The largest body accepted (default 256 KiB).
        pub fn max_body_bytes(mut self, bytes: usize) -> Self {
            self.http.max_body_bytes = bytes;
            self
        }

        /// Trusts the root certificate `pem` (PEM) beside the system's roots: a provider
        /// behind a private CA, or a test CA. Call again for more. Ignored with a `client`.
        pub fn add_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.http.roots.push(pem.into());
            self
        }

        /// Uses a ready-made client (proxies, client certificates). Build it with
        /// `redirect(reqwest::redirect::Policy::none())`: a redirect it follows to another
        /// origin is refused, but only after the request was made.
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.http.client = Some(client);
            self
        }
    };
}
pub(crate) use http_option_setters;

/// Fetches documents under the [`HttpOptions`].
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    total_timeout: Duration,
    max_body_bytes: usize,
    plain_http: PlainHttp,
}

impl HttpOptions {
    pub(crate) fn build(self) -> Result<Fetcher, BuildError> {
        if self.total_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(BuildError::invalid_setting(
                "connect_timeout and timeout must be positive (defaults 2 s and 5 s)",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(BuildError::invalid_setting(
                "max_body_bytes must be positive (default 256 KiB)",
            ));
        }
        let roots = self
            .roots
            .iter()
            .map(|pem| reqwest::Certificate::from_pem(pem))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| BuildError::Client(error.into()))?;
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .tls_certs_merge(roots)
                .connect_timeout(self.connect_timeout)
                .timeout(self.total_timeout)
                .https_only(self.plain_http == PlainHttp::Never)
                .user_agent(concat!("jwkstash/", env!("CARGO_PKG_VERSION")))
                .redirect(redirect::Policy::custom(|attempt| {
                    let origin = attempt.previous().first().cloned();
                    if attempt.previous().len() > MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else if origin.is_some_and(|origin| same_origin(attempt.url(), &origin)) {
                        attempt.follow()
                    } else {
                        attempt.stop()
                    }
                }))
                .build()
                .map_err(|error| BuildError::Client(error.into()))?,
        };
        Ok(Fetcher {
            client,
            total_timeout: self.total_timeout,
            max_body_bytes: self.max_body_bytes,
            plain_http: self.plain_http,
        })
    }
}

impl Fetcher {
    /// Checks a URL found at run time (such as a discovered `jwks_uri`) like a configured one.
    pub(crate) fn check_url(&self, url: &str) -> Result<Url, BuildError> {
        checked_url(url, self.plain_http)
    }

    /// GETs `url` within the total deadline, retrying once on connection errors.
    pub(crate) async fn get(
        &self,
        url: &Url,
        validators: &Validators,
        accept: &'static str,
    ) -> Result<Fetched, FetchError> {
        let attempt = async {
            match self.get_once(url, validators, accept).await {
                Err(error) if worth_retrying(&error) => {
                    tracing::debug!(%error, "retrying the fetch once");
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=300))).await;
                    self.get_once(url, validators, accept).await
                }
                outcome => outcome,
            }
        };
        tokio::time::timeout(self.total_timeout, attempt)
            .await
            .unwrap_or(Err(FetchError::Timeout(self.total_timeout)))
    }

    async fn get_once(
        &self,
        url: &Url,
        validators: &Validators,
        accept: &'static str,
    ) -> Result<Fetched, FetchError> {
        let mut request = self.client.get(url.clone()).header(ACCEPT, accept);
        if let Some(etag) = validators
            .etag
            .as_deref()
            .and_then(|etag| HeaderValue::from_str(etag).ok())
        {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let mut response = request.send().await.map_err(classify)?;
        if !same_origin(response.url(), url) {
            // Only reachable with a caller's client that follows redirects itself.
            return Err(FetchError::Redirect);
        }
        let status = response.status();
        let max_age = max_age(response.headers());
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED if validators.etag.is_some() => {
                return Ok(Fetched::NotModified { max_age });
            }
            status if status.is_redirection() => return Err(FetchError::Redirect),
            status => return Err(FetchError::Status(status.as_u16())),
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|etag| etag.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(&mut response, self.max_body_bytes).await?;
        Ok(Fetched::Modified {
            body,
            etag,
            max_age,
        })
    }
}

/// Parses `url` and refuses anything but https (or http where `plain_http` allows it) with a
/// host.
pub(crate) fn checked_url(url: &str, plain_http: PlainHttp) -> Result<Url, BuildError> {
    let parsed = Url::parse(url).map_err(|error| BuildError::InvalidUrl(error.to_string()))?;
    if parsed.host_str().is_none() {
        return Err(BuildError::InvalidUrl(format!("{url}: no host")));
    }
    let http_allowed = match plain_http {
        PlainHttp::Never => false,
        PlainHttp::Loopback => is_loopback(&parsed),
        PlainHttp::Any => true,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if http_allowed => Ok(parsed),
        "http" => Err(BuildError::InsecureUrl(url.to_owned())),
        scheme => Err(BuildError::InvalidUrl(format!(
            "unsupported scheme {scheme}"
        ))),
    }
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // The URL parser has normalised the host: IPv6 in brackets, IPv4 in dotted quads.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A connection that failed before an answer is retried once: a reset or a refused connect is
/// often one bad backend behind a load balancer. A 5xx is not: the provider answered, and the
/// verifier's backoff (in the background, while the last good set serves) schedules the next
/// try; an immediate retry would only double the load on a provider that is struggling.
fn worth_retrying(error: &FetchError) -> bool {
    matches!(error, FetchError::Connect(_) | FetchError::Transport(_))
}

fn classify(error: reqwest::Error) -> FetchError {
    if error.is_redirect() {
        FetchError::Redirect
    } else if error.is_connect() {
        FetchError::Connect(error.into())
    } else {
        FetchError::Transport(error.into())
    }
}

async fn read_capped(response: &mut reqwest::Response, limit: usize) -> Result<Bytes, FetchError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(FetchError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `Cache-Control: max-age` less `Age`; `no-cache` and `no-store` count as zero (then clamped
/// up to the policy's minimum).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return Some(Duration::ZERO);
            }
            if let Some(seconds) = lower.strip_prefix("max-age=") {
                max_age = seconds.trim_matches('"').parse::<u64>().ok();
            }
        }
    }
    let age = headers
        .get(AGE)
        .and_then(|age| age.to_str().ok())
        .and_then(|age| age.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map(|seconds| Duration::from_secs(seconds.saturating_sub(age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn max_age_is_read_and_aged() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            max_age(&headers(&[("cache-control", "public, max-age=300")])),
            secs(300)
        );
        assert_eq!(
            max_age(&headers(&[(
                "cache-control",
                "Max-Age=60, must-revalidate"
            )])),
            secs(60)
        );
        assert_eq!(
            max_age(&headers(&[
                ("cache-control", "max-age=300"),
                ("age", "100")
            ])),
            secs(200)
        );
        assert_eq!(max_age(&headers(&[("cache-control", "no-cache")])), secs(0));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=abc")])), None);
        assert_eq!(max_age(&headers(&[])), None);
    }

    #[test]
    fn plain_http_to_loopback_only_when_asked() {
        let loopback = [
            "http://localhost:8080/realms/x",
            "http://LOCALHOST/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.3.4.5/jwks",
            "http://[::1]:8080/jwks",
        ];
        for url in loopback {
            assert!(checked_url(url, PlainHttp::Loopback).is_ok(), "{url}");
            assert!(checked_url(url, PlainHttp::Never).is_err(), "{url}");
        }
        let elsewhere = [
            "http://idp.example.com/jwks",
            "http://localhost.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://[::2]/jwks",
            "http://0.0.0.0/jwks",
        ];
        for url in elsewhere {
            assert!(checked_url(url, PlainHttp::Loopback).is_err(), "{url}");
            assert!(checked_url(url, PlainHttp::Any).is_ok(), "{url}");
        }
        assert!(checked_url("https://idp.example.com/jwks", PlainHttp::Never).is_ok());
    }

    #[test]
    fn urls_are_checked() {
        assert!(checked_url("https://idp.example.com/jwks", PlainHttp::Never).is_ok());
        assert!(matches!(
            checked_url("http://idp.example.com/jwks", PlainHttp::Never),
            Err(BuildError::InsecureUrl(_))
        ));
        assert!(checked_url("http://127.0.0.1:8080/jwks", PlainHttp::Any).is_ok());
        assert!(matches!(
            checked_url("file:///etc/passwd", PlainHttp::Any),
            Err(BuildError::InvalidUrl(_))
        ));
        assert!(matches!(
            checked_url("not a url", PlainHttp::Any),
            Err(BuildError::InvalidUrl(_))
        ));
    }
}
