//! One error for every builder: a function that builds a verifier and its tiers returns
//! [`BuildError`] and uses `?` on each.

/// Why a builder refused its settings: a verifier's, or a tier's. Each variant holds the
/// builder's own error, whose `Display` says what to change.
///
/// ```no_run
/// # #[cfg(feature = "redis")]
/// async fn verifier() -> Result<jwkstash::Verifier, jwkstash::BuildError> {
///     let redis = jwkstash::RedisCache::builder()
///         .url("redis://:change-me@127.0.0.1:6379")
///         .prefix("my-service")
///         .hmac_secret(std::env::var("JWKSTASH_HMAC_SECRET").unwrap_or_default().into_bytes())
///         .build()
///         .await?;
///     Ok(jwkstash::Verifier::builder()
///         .jwks_url("https://idp.example.com/.well-known/jwks.json")
///         .issuer("https://idp.example.com/")
///         .audience("my-api")
///         .shared_tier(std::sync::Arc::new(redis))
///         .build()?)
/// }
/// ```
///
/// To tell refusals apart, match the builder's own error: [`VerifierBuildError`](crate::VerifierBuildError)
/// at the root, `RedisBuildError` and `FileBuildError` in [`tier`](crate::tier), beside their
/// builders.
///
/// ```
/// use jwkstash::{BuildError, Verifier, VerifierBuildError};
///
/// let refused = Verifier::builder()
///     .jwks_url("https://idp.example.com/.well-known/jwks.json")
///     .issuer("https://idp.example.com/")
///     .build()
///     .map_err(BuildError::from);
/// assert!(matches!(
///     refused,
///     Err(BuildError::Verifier(VerifierBuildError::MissingAudience))
/// ));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A verifier's settings ([`VerifierBuilder`](crate::VerifierBuilder), or an
    /// [`Issuers`](crate::Issuers) resolver's, or a source's builder).
    #[error(transparent)]
    Verifier(#[from] jwkstash_jwks::BuildError),
    /// The Redis tier's settings, or a first connection that failed.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error(transparent)]
    Redis(#[from] jwkstash_redis::BuildError),
    /// The snapshot tier's settings (its directory, its secret).
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    #[error(transparent)]
    File(#[from] jwkstash_file::BuildError),
}
