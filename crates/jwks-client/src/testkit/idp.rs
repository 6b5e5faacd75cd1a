//! An identity provider on 127.0.0.1 that serves a JWKS and an OpenID configuration, mints
//! tokens, rotates keys, counts requests, and misbehaves on demand.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jwkstash_core::{SharedClock, SystemClock};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::keys::{TestKey, jwks};
use crate::{HttpKeySource, VerifierBuilder};

/// How the JWKS endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// The published keys, with an ETag (304 on a match) and the configured `max-age`.
    Serve,
    /// An empty answer with this status.
    Status(u16),
    /// 200 with this body and content type.
    Body {
        /// The `Content-Type`.
        content_type: &'static str,
        /// The body.
        body: String,
    },
    /// Accepts the request and answers only when [`Idp::release_hung`] is called: then as the
    /// behaviour set at that moment says (503 if it is still `Hang`).
    Hang,
    /// Waits this long (tokio time), then serves the published keys.
    Slow(Duration),
    /// Answers 200 and sends the JWKS one byte per interval.
    Trickle(Duration),
    /// Answers 302 to this location.
    RedirectTo(String),
    /// Answers 200 and streams 8 KiB chunks without end (and without a `Content-Length`).
    Endless,
}

struct IdpState {
    issuer: String,
    audience: String,
    published: Mutex<Vec<Arc<TestKey>>>,
    signing: Mutex<Arc<TestKey>>,
    behaviour: Mutex<Behaviour>,
    max_age: Mutex<Option<u64>>,
    jwks_requests: AtomicUsize,
    /// JWKS requests received and not yet answered.
    open_requests: AtomicUsize,
    release: tokio::sync::Notify,
    discovery_requests: AtomicUsize,
    /// What the discovery document claims, when a test wants it to lie.
    discovery_override: Mutex<(Option<String>, Option<String>)>,
    clock: SharedClock,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl IdpState {
    fn jwks_body(&self) -> String {
        let published = lock(&self.published);
        let keys: Vec<&TestKey> = published.iter().map(Arc::as_ref).collect();
        jwks(&keys).to_string()
    }
}

/// An embedded identity provider. Stops when dropped.
pub struct Idp {
    addr: SocketAddr,
    state: Arc<IdpState>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.state.issuer)
            .finish_non_exhaustive()
    }
}

/// Configures an [`Idp`] before it starts.
#[must_use]
#[derive(Debug, Default)]
pub struct IdpBuilder {
    key: Option<TestKey>,
    clock: Option<SharedClock>,
    audience: Option<String>,
}

impl IdpBuilder {
    /// The first signing key (default: a fresh RSA-2048 key with kid `key-1`).
    pub fn key(mut self, key: TestKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The clock for `iat`/`exp` of minted tokens (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The audience of minted tokens (default `jwkstash-demo`).
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(self) -> std::io::Result<Idp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let key = Arc::new(self.key.unwrap_or_else(|| TestKey::rsa("key-1")));
        let state = Arc::new(IdpState {
            issuer: format!("http://{addr}"),
            audience: self.audience.unwrap_or_else(|| "jwkstash-demo".into()),
            published: Mutex::new(vec![Arc::clone(&key)]),
            signing: Mutex::new(key),
            behaviour: Mutex::new(Behaviour::Serve),
            max_age: Mutex::new(None),
            jwks_requests: AtomicUsize::new(0),
            open_requests: AtomicUsize::new(0),
            release: tokio::sync::Notify::new(),
            discovery_requests: AtomicUsize::new(0),
            discovery_override: Mutex::new((None, None)),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        });
        let router = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "embedded identity provider stopped");
            }
        });
        Ok(Idp {
            addr,
            state,
            server,
        })
    }
}

impl Idp {
    /// A builder.
    pub fn builder() -> IdpBuilder {
        IdpBuilder::default()
    }

    /// Starts a provider with a fresh RSA-2048 key.
    pub async fn start() -> std::io::Result<Self> {
        Self::builder().start().await
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer (`http://127.0.0.1:PORT`), as minted into `iss`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The audience minted into `aud`.
    pub fn audience(&self) -> &str {
        &self.state.audience
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.state.issuer)
    }

    /// A key source for this provider (plain http allowed: loopback only).
    pub fn key_source(&self) -> HttpKeySource {
        HttpKeySource::builder(self.jwks_url())
            .allow_http(true)
            .build()
            .expect("loopback key source")
    }

    /// A verifier builder with this provider's source, issuer and audience.
    pub fn verifier_builder(&self) -> VerifierBuilder {
        crate::Verifier::builder()
            .key_source(self.key_source())
            .issuer(self.issuer())
            .audience(self.audience())
    }

    /// The standard claims of a valid token: `iss`, `aud`, `sub`, `iat` now, `exp` in an hour.
    pub fn claims(&self) -> Value {
        let now = self
            .state
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({
            "iss": self.state.issuer,
            "aud": self.state.audience,
            "sub": "user-1",
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// A valid token signed by the current signing key.
    pub fn mint(&self) -> String {
        self.signing_key().sign(&self.claims())
    }

    /// A token with the standard claims overridden by `extra` (members set to `null` removed).
    pub fn mint_with(&self, extra: Value) -> String {
        let mut claims = self.claims();
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            for (name, value) in extra {
                if value.is_null() {
                    claims.remove(&name);
                } else {
                    claims.insert(name, value);
                }
            }
        }
        self.signing_key().sign(&claims)
    }

    /// The current signing key.
    pub fn signing_key(&self) -> Arc<TestKey> {
        Arc::clone(&lock(&self.state.signing))
    }

    /// Replaces the published set with `key` alone and signs with it from now on.
    pub fn rotate(&self, key: TestKey) {
        let key = Arc::new(key);
        *lock(&self.state.published) = vec![Arc::clone(&key)];
        *lock(&self.state.signing) = key;
    }

    /// Publishes `key` beside the current keys (without signing with it).
    pub fn publish(&self, key: TestKey) {
        lock(&self.state.published).push(Arc::new(key));
    }

    /// Sets how the JWKS endpoint answers.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.state.behaviour) = behaviour;
    }

    /// Sets the `Cache-Control: max-age` sent with the JWKS (none by default).
    pub fn set_max_age(&self, seconds: Option<u64>) {
        *lock(&self.state.max_age) = seconds;
    }

    /// Makes the discovery document name another `issuer` and/or `jwks_uri` (`None`: the true
    /// ones).
    pub fn set_discovery(&self, issuer: Option<String>, jwks_uri: Option<String>) {
        *lock(&self.state.discovery_override) = (issuer, jwks_uri);
    }

    /// How many requests reached the JWKS endpoint.
    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    /// How many JWKS requests have arrived and are not answered yet (hanging or slow ones).
    pub fn open_requests(&self) -> usize {
        self.state.open_requests.load(Ordering::SeqCst)
    }

    /// Lets every request held by [`Behaviour::Hang`] answer, as the current behaviour says.
    pub fn release_hung(&self) {
        self.state.release.notify_waiters();
    }

    /// How many requests reached the OpenID configuration endpoint.
    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts a JWKS request as open until its handler ends (answered, or dropped by the server).
struct OpenRequest(Arc<IdpState>);

impl OpenRequest {
    fn new(state: &Arc<IdpState>) -> Self {
        state.open_requests.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(state))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_jwks(State(state): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    let released = state.release.notified();
    tokio::pin!(released);
    released.as_mut().enable();
    let _open = OpenRequest::new(&state);
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let mut behaviour = lock(&state.behaviour).clone();
    if behaviour == Behaviour::Hang {
        released.await;
        behaviour = lock(&state.behaviour).clone();
    }
    if let Behaviour::Slow(delay) = behaviour {
        tokio::time::sleep(delay).await;
        behaviour = Behaviour::Serve;
    }
    respond(&state, behaviour, &headers)
}

/// The answer for a behaviour that needs no waiting.
fn respond(state: &IdpState, behaviour: Behaviour, headers: &HeaderMap) -> Response {
    match behaviour {
        Behaviour::Hang | Behaviour::Slow(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Behaviour::Serve => {
            let body = state.jwks_body();
            let etag = format!(
                "\"{}\"",
                &hex::encode(Sha256::digest(body.as_bytes()))[..16]
            );
            let mut response = if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|sent| sent.as_bytes() == etag.as_bytes())
            {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            };
            if let Ok(etag) = etag.parse() {
                response.headers_mut().insert(header::ETAG, etag);
            }
            let max_age = *lock(&state.max_age);
            if let Some(Ok(value)) = max_age.map(|age| format!("public, max-age={age}").parse()) {
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            response
        }
        Behaviour::Status(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Behaviour::Body { content_type, body } => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Behaviour::Trickle(every) => {
            let body = state.jwks_body().into_bytes();
            let stream = futures_util::stream::unfold(0, move |sent| {
                let body = body.clone();
                async move {
                    if sent >= body.len() {
                        return None;
                    }
                    tokio::time::sleep(every).await;
                    let chunk = bytes::Bytes::copy_from_slice(&body[sent..=sent]);
                    Some((Ok::<_, std::io::Error>(chunk), sent + 1))
                }
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Behaviour::Endless => {
            let chunk = bytes::Bytes::from(vec![b' '; 8 * 1024]);
            let stream =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Behaviour::RedirectTo(location) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
    }
}

async fn serve_discovery(State(state): State<Arc<IdpState>>) -> Response {
    state.discovery_requests.fetch_add(1, Ordering::SeqCst);
    let (issuer, jwks_uri) = lock(&state.discovery_override).clone();
    axum::Json(json!({
        "issuer": issuer.unwrap_or_else(|| state.issuer.clone()),
        "jwks_uri": jwks_uri.unwrap_or_else(|| format!("{}/.well-known/jwks.json", state.issuer)),
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}
