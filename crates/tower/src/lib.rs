//! A [tower](https://docs.rs/tower) layer that verifies `Authorization: Bearer` tokens with
//! jwkstash and puts the claims in the request's extensions, and (feature `axum`) a
//! [`Claims<T>`] extractor for axum handlers.
//!
//! Failures answer as RFC 6750 says, without detail that helps an attacker:
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization: Bearer` credentials | 401, `WWW-Authenticate: Bearer` |
//! | malformed header (two spaces, bad characters, several headers) | 400, `WWW-Authenticate: Bearer error="invalid_request"` |
//! | invalid token (signature, expiry, issuer, audience, ...) | 401, `WWW-Authenticate: Bearer error="invalid_token"` |
//! | keys unavailable (provider down past `max_stale`) | 503 with `Retry-After`: our outage, never 401 |
//!
//! A gRPC call (`content-type: application/grpc…`) gets a trailers-only gRPC answer instead
//! (HTTP 200, no body): `grpc-status: 16` UNAUTHENTICATED for a missing, malformed or invalid
//! token, `grpc-status: 14` UNAVAILABLE when the keys are unavailable, and a `grpc-message`
//! without token detail. So a tonic client sees `Code::Unauthenticated`/`Code::Unavailable`,
//! not a transport error; the layer works in `tonic::transport::Server::builder().layer(..)`.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod demo {
//! use axum::{Router, routing::get};
//! use jwkstash_jwks::Verifier;
//! use jwkstash_tower::{Claims, JwtLayer};
//! use serde::Deserialize;
//!
//! #[derive(Clone, Deserialize)]
//! struct User {
//!     sub: String,
//! }
//!
//! async fn me(Claims(user): Claims<User>) -> String {
//!     format!("hello {}", user.sub)
//! }
//!
//! fn app(verifier: Verifier) -> Router {
//!     Router::new().route("/me", get(me)).layer(JwtLayer::<User>::new(verifier))
//! }
//! # }
//! ```

mod bearer;
mod layer;

pub use bearer::{BearerError, bearer_token};
pub use layer::{Authenticate, Claims, Jwt, JwtLayer};

#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "axum")]
pub use extract::MissingClaims;
