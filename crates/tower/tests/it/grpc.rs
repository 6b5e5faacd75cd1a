//! `JwtLayer` in front of a real tonic server (the standard health service), called by a real
//! tonic client over HTTP/2 on 127.0.0.1: a gRPC client sees gRPC status codes, never a
//! transport error.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use jwkstash_jwks::Verifier;
use jwkstash_jwks::testkit::{Behaviour, Idp};
use jwkstash_tower::JwtLayer;
use serde_json::Value;
use tonic::Code;
use tonic::transport::{Endpoint, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The health service behind `JwtLayer` on a free loopback port.
async fn serve(verifier: Verifier) -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        Server::builder()
            .layer(JwtLayer::<Value>::new(verifier))
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    addr
}

/// One health check with `authorization` (if any); the gRPC code it ends with.
async fn check(addr: SocketAddr, authorization: Option<String>) -> Code {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    match HealthClient::new(channel).check(request).await {
        Ok(_) => Code::Ok,
        Err(status) => {
            assert!(
                !status.message().contains("eyJ"),
                "token detail in {status:?}"
            );
            status.code()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_answered_with_grpc_status_codes() {
    let idp = Idp::start().await.unwrap();
    let addr = serve(idp.verifier_builder().build().unwrap()).await;
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    assert_eq!(check(addr, bearer(&idp.mint())).await, Code::Ok);
    assert_eq!(check(addr, None).await, Code::Unauthenticated);
    assert_eq!(
        check(addr, Some("Basic dXNlcjpwdw==".into())).await,
        Code::Unauthenticated
    );
    let mut forged = idp.mint();
    forged.push('A');
    assert_eq!(check(addr, bearer(&forged)).await, Code::Unauthenticated);

    // A verifier whose provider fails and that has no keys: UNAVAILABLE, not UNAUTHENTICATED.
    let down = Idp::start().await.unwrap();
    down.set_behaviour(Behaviour::Status(503));
    let addr = serve(down.verifier_builder().build().unwrap()).await;
    assert_eq!(check(addr, bearer(&down.mint())).await, Code::Unavailable);
}
