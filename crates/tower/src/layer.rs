//! [`JwtLayer`] and its service [`Jwt`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use jwkstash_jwks::{Issuers, Verifier, VerifyError};
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use crate::bearer::{BearerError, bearer_token};

/// The verified claims of a request, put in its extensions by [`Jwt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<T>(pub T);

/// What a [`JwtLayer`] verifies tokens with: one [`Verifier`] or a registry of [`Issuers`].
pub trait Authenticate: Clone + Send + Sync + 'static {
    /// Verifies `token` and returns its claims.
    fn authenticate<C: DeserializeOwned + Send + 'static>(
        &self,
        token: String,
    ) -> impl Future<Output = Result<C, VerifyError>> + Send + 'static;
}

impl Authenticate for Verifier {
    fn authenticate<C: DeserializeOwned + Send + 'static>(
        &self,
        token: String,
    ) -> impl Future<Output = Result<C, VerifyError>> + Send + 'static {
        let verifier = self.clone();
        async move { verifier.verify(&token).await }
    }
}

impl Authenticate for Issuers {
    fn authenticate<C: DeserializeOwned + Send + 'static>(
        &self,
        token: String,
    ) -> impl Future<Output = Result<C, VerifyError>> + Send + 'static {
        let issuers = self.clone();
        async move { issuers.verify(&token).await }
    }
}

/// When no retry time is known, how long a 503 asks clients to wait.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The challenge and retry settings shared by the services of one layer.
#[derive(Debug)]
struct Challenge {
    realm: Option<String>,
}

impl Challenge {
    fn header(&self, error: Option<&str>) -> HeaderValue {
        let mut value = String::from("Bearer");
        let mut params = Vec::new();
        if let Some(realm) = &self.realm {
            params.push(format!("realm=\"{realm}\""));
        }
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
        }
        if !params.is_empty() {
            value.push(' ');
            value.push_str(&params.join(", "));
        }
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
    }

    fn refuse<B: Default>(&self, status: StatusCode, error: Option<&str>) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, self.header(error));
        response
    }

    fn for_bearer_error<B: Default>(&self, error: BearerError, grpc: bool) -> Response<B> {
        match error {
            _ if grpc => grpc_refusal(GRPC_UNAUTHENTICATED, "missing or malformed bearer token"),
            BearerError::Missing => self.refuse(StatusCode::UNAUTHORIZED, None),
            _ => self.refuse(StatusCode::BAD_REQUEST, Some("invalid_request")),
        }
    }

    fn for_verify_error<B: Default>(&self, error: &VerifyError, grpc: bool) -> Response<B> {
        match error {
            VerifyError::KeysUnavailable(_) if grpc => {
                grpc_refusal(GRPC_UNAVAILABLE, "signing keys unavailable")
            }
            _ if grpc => grpc_refusal(GRPC_UNAUTHENTICATED, "invalid bearer token"),
            VerifyError::KeysUnavailable(unavailable) => {
                let mut response = Response::new(B::default());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let retry = unavailable.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
                let seconds = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                response
            }
            _ => self.refuse(StatusCode::UNAUTHORIZED, Some("invalid_token")),
        }
    }
}

/// gRPC status UNAUTHENTICATED: no valid credentials.
const GRPC_UNAUTHENTICATED: u16 = 16;
/// gRPC status UNAVAILABLE: try again later.
const GRPC_UNAVAILABLE: u16 = 14;

/// Whether a request is a gRPC call (`content-type: application/grpc`, `application/grpc+proto`,
/// ...): its client reads the answer from `grpc-status`, not from the HTTP status.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// A trailers-only gRPC answer: HTTP 200, no body, `grpc-status` and a `grpc-message` that names
/// the rule class only, never the token.
fn grpc_refusal<B: Default>(code: u16, message: &'static str) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    // The messages are fixed ASCII without `%`: no percent-encoding is needed.
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

/// A [`Layer`] that verifies the bearer token of every request and puts [`Claims<C>`] in its
/// extensions; requests without a valid token never reach the inner service.
pub struct JwtLayer<C, A = Verifier> {
    auth: A,
    challenge: Arc<Challenge>,
    claims: PhantomData<fn() -> C>,
}

impl<C, A: Clone> Clone for JwtLayer<C, A> {
    fn clone(&self) -> Self {
        Self {
            auth: self.auth.clone(),
            challenge: Arc::clone(&self.challenge),
            claims: PhantomData,
        }
    }
}

impl<C, A: fmt::Debug> fmt::Debug for JwtLayer<C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtLayer")
            .field("auth", &self.auth)
            .field("realm", &self.challenge.realm)
            .finish()
    }
}

impl<C, A: Authenticate> JwtLayer<C, A> {
    /// A layer verifying with `auth` (a [`Verifier`] or [`Issuers`]).
    pub fn new(auth: A) -> Self {
        Self {
            auth,
            challenge: Arc::new(Challenge { realm: None }),
            claims: PhantomData,
        }
    }

    /// Names a realm in the `WWW-Authenticate` challenges (quotes and backslashes are dropped).
    #[must_use]
    pub fn realm(self, realm: &str) -> Self {
        let realm = realm.replace(['"', '\\'], "");
        Self {
            challenge: Arc::new(Challenge { realm: Some(realm) }),
            ..self
        }
    }
}

impl<S, C, A: Clone> Layer<S> for JwtLayer<C, A> {
    type Service = Jwt<S, C, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Jwt {
            inner,
            auth: self.auth.clone(),
            challenge: Arc::clone(&self.challenge),
            claims: PhantomData,
        }
    }
}

/// The service of a [`JwtLayer`].
pub struct Jwt<S, C, A = Verifier> {
    inner: S,
    auth: A,
    challenge: Arc<Challenge>,
    claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C, A: Clone> Clone for Jwt<S, C, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: self.auth.clone(),
            challenge: Arc::clone(&self.challenge),
            claims: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C, A: fmt::Debug> fmt::Debug for Jwt<S, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("inner", &self.inner)
            .field("auth", &self.auth)
            .finish()
    }
}

impl<S, C, A, ReqBody, ResBody> Service<Request<ReqBody>> for Jwt<S, C, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
    A: Authenticate,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The ready service goes with this request; a clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let challenge = Arc::clone(&self.challenge);
        let grpc = is_grpc(request.headers());
        let token = bearer_token(request.headers()).map(str::to_owned);
        let verification = token.map(|token| self.auth.authenticate::<C>(token));
        Box::pin(async move {
            let claims = match verification {
                Err(error) => return Ok(challenge.for_bearer_error(error, grpc)),
                Ok(verification) => match verification.await {
                    Ok(claims) => claims,
                    Err(error) => return Ok(challenge.for_verify_error(&error, grpc)),
                },
            };
            request.extensions_mut().insert(Claims::<C>(claims));
            inner.call(request).await
        })
    }
}
