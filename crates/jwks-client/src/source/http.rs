//! [`HttpKeySource`]: fetches a JWKS over HTTPS with deadlines, a body cap and one careful retry.

use async_trait::async_trait;
use jwkstash_core::{FetchError, Fetched, KeySource, Validators};
use reqwest::Url;

use crate::error::BuildError;
use crate::source::fetcher::{Fetcher, HttpOptions, checked_url, http_option_setters};

/// The media types asked for a JWKS.
pub(crate) const JWKS_MEDIA_TYPES: &str = "application/jwk-set+json, application/json";

/// A [`KeySource`] that GETs a JWKS URL.
///
/// * `https` only, unless [`allow_http`](HttpKeySourceBuilder::allow_http) is set (for loopback
///   tests); redirects only within the same origin, at most 3.
/// * A connect deadline and a total deadline over the whole fetch, so a server that hangs or
///   trickles bytes cannot hold a caller longer than the total.
/// * The body is capped while it is read; only 200 (and 304 to a conditional request) are
///   accepted.
/// * One retry after 100–300 ms on a connection error or a reset; none on an answer (4xx, 5xx):
///   the verifier's backoff schedules the next try.
/// * `Cache-Control: max-age` (less `Age`) is passed on as the freshness hint; the ETag is sent
///   back as `If-None-Match`.
#[derive(Debug, Clone)]
pub struct HttpKeySource {
    url: Url,
    fetcher: Fetcher,
}

/// Builds an [`HttpKeySource`].
#[must_use]
#[derive(Debug)]
pub struct HttpKeySourceBuilder {
    url: String,
    http: HttpOptions,
}

impl HttpKeySource {
    /// A builder for the JWKS at `url`.
    pub fn builder(url: impl Into<String>) -> HttpKeySourceBuilder {
        HttpKeySourceBuilder {
            url: url.into(),
            http: HttpOptions::default(),
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

#[async_trait]
impl KeySource for HttpKeySource {
    fn id(&self) -> &str {
        self.url.as_str()
    }

    async fn fetch(&self, validators: &Validators) -> Result<Fetched, FetchError> {
        self.fetcher
            .get(&self.url, validators, JWKS_MEDIA_TYPES)
            .await
    }
}

impl HttpKeySourceBuilder {
    http_option_setters!();

    /// Checks the URL and settings and builds the source.
    pub fn build(self) -> Result<HttpKeySource, BuildError> {
        let url = checked_url(&self.url, self.http.plain_http)?;
        Ok(HttpKeySource {
            url,
            fetcher: self.http.build()?,
        })
    }
}
