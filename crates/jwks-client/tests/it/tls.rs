//! https end to end: a JWKS and a discovery document served over TLS on 127.0.0.1 with a test
//! CA made at run time. Trusted with that root they verify; an untrusted, expired or misnamed
//! certificate is refused with a clear cause, and so is a redirect from https to http.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use jwkstash_core::{FetchError, KeySource, Validators};
use jwkstash_jwks::testkit::{TestKey, jwks};
use jwkstash_jwks::{DiscoverySource, HttpKeySource, RefreshError, Verifier, VerifyError};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// A test CA and what it can sign.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate chain and key for `names`, optionally long expired.
    fn leaf(&self, names: &[&str], expired: bool) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A free loopback port.
async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Serves `router` over TLS with `cert`/`key` on `listener`.
fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    (cert, key): (String, String),
) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls_pemfile_certs(&cert);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    addr
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A provider at `https://localhost:PORT` with `key`: JWKS and discovery document.
fn provider(key: &TestKey, issuer: &str) -> Router {
    let body = jwks(&[key]).to_string();
    let document = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json") });
    Router::new()
        .route(
            "/jwks.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(document) }),
        )
}

fn claims(issuer: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({ "iss": issuer, "aud": "api", "sub": "user", "iat": now, "exp": now + 600 })
}

/// The TLS failure of a fetch, as the chain of its cause says it.
async fn tls_refusal(source: HttpKeySource) -> String {
    let error = source.fetch(&Validators::default()).await.unwrap_err();
    assert!(matches!(error, FetchError::Connect(_)), "{error:?}");
    let mut chain = error.to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(inner) = cause {
        chain.push_str(": ");
        chain.push_str(&inner.to_string());
        cause = inner.source();
    }
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_trusted_root_verifies_and_anything_else_is_refused_clearly() {
    let ca = Ca::new();
    let key = TestKey::ec_p256("k1");
    let listener = bind().await;
    let issuer = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    serve_tls(
        listener,
        provider(&key, &issuer),
        ca.leaf(&["localhost"], false),
    );
    let jwks_url = format!("{issuer}/jwks.json");
    let token = key.sign(&claims(&issuer));

    // Trusted root: the JWKS URL and discovery both verify.
    let source = HttpKeySource::builder(jwks_url.as_str())
        .add_root_certificate(ca.pem.as_bytes())
        .build()
        .unwrap();
    let verifier = Verifier::builder()
        .key_source(source)
        .issuer(issuer.as_str())
        .audience("api")
        .build()
        .unwrap();
    verifier.verify::<Value>(&token).await.unwrap();
    let discovered = DiscoverySource::builder(issuer.as_str())
        .add_root_certificate(ca.pem.as_bytes())
        .build()
        .unwrap();
    let verifier = Verifier::builder()
        .key_source(discovered)
        .issuer(issuer.as_str())
        .audience("api")
        .build()
        .unwrap();
    verifier.verify::<Value>(&token).await.unwrap();

    // Without the root: unknown issuer, and the verification is "keys unavailable" (503).
    let untrusted = HttpKeySource::builder(jwks_url.as_str()).build().unwrap();
    let chain = tls_refusal(untrusted).await;
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    let verifier = Verifier::builder()
        .jwks_url(jwks_url.as_str())
        .issuer(issuer.as_str())
        .audience("api")
        .build()
        .unwrap();
    let error = verifier.verify::<Value>(&token).await.unwrap_err();
    let VerifyError::KeysUnavailable(unavailable) = &error else {
        panic!("{error:?}");
    };
    assert!(matches!(
        unavailable.cause(),
        RefreshError::Fetch(FetchError::Connect(_))
    ));

    // An expired certificate, and one for another name, from the trusted CA.
    let expired = serve_tls(
        bind().await,
        provider(&key, &issuer),
        ca.leaf(&["localhost"], true),
    );
    let misnamed = serve_tls(
        bind().await,
        provider(&key, &issuer),
        ca.leaf(&["idp.example.com"], false),
    );
    for (addr, expected) in [
        (expired, "certificate expired"),
        (misnamed, "not valid for name"),
    ] {
        let source = HttpKeySource::builder(format!("https://localhost:{}/jwks.json", addr.port()))
            .add_root_certificate(ca.pem.as_bytes())
            .build()
            .unwrap();
        let chain = tls_refusal(source).await;
        assert!(chain.contains(expected), "{expected}: {chain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_http_is_refused() {
    let ca = Ca::new();
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_url = format!(
        "http://localhost:{}/jwks.json",
        plain.local_addr().unwrap().port()
    );
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let key = TestKey::ec_p256("k1");
    let body = jwks(&[&key]).to_string();
    tokio::spawn(async move {
        let router = Router::new().route(
            "/jwks.json",
            get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.clone();
                async move { body }
            }),
        );
        axum::serve(plain, router).await.unwrap();
    });
    let redirecting = Router::new().route(
        "/jwks.json",
        get(move || {
            let location = plain_url.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, location)]).into_response() }
        }),
    );
    let addr = serve_tls(bind().await, redirecting, ca.leaf(&["localhost"], false));
    let source = HttpKeySource::builder(format!("https://localhost:{}/jwks.json", addr.port()))
        .add_root_certificate(ca.pem.as_bytes())
        .build()
        .unwrap();
    let error = source.fetch(&Validators::default()).await.unwrap_err();
    assert!(
        matches!(error, FetchError::Redirect | FetchError::Status(302)),
        "{error:?}"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}
