//! A restart during a provider outage, with real processes: a verifier process with a
//! snapshot directory verifies a token and is SIGKILLed; the provider goes down; a new process
//! starts from the snapshot and verifies valid tokens with no request to the provider. A
//! corrupt snapshot makes the next process answer "unavailable", never crash.
//!
//! Each process is this test binary run again as `instance` (an ignored test that acts only
//! when spawned with `JWKSTASH_SNAPSHOT_INSTANCE`): it verifies the tokens it reads on stdin
//! and answers `@@ ok` or `@@ err <code>` on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/process.rs"]
mod process;

use std::path::Path;

use jwkstash::Verifier;
use jwkstash::source::HttpKeySource;
use jwkstash::testkit::{Behaviour, Idp, TestKey};
use process::{VerifierProcess, text};

const INSTANCE_ENV: &str = "JWKSTASH_SNAPSHOT_INSTANCE";

/// The instance process: one verifier with a snapshot directory, driven by stdin.
#[test]
#[ignore = "runs only as a spawned instance"]
fn instance() {
    process::serve(INSTANCE_ENV, |config| async move {
        let source = HttpKeySource::builder(text(&config, "jwks_url"))
            .allow_http(true)
            .build()
            .unwrap();
        Verifier::builder()
            .key_source(source)
            .issuer(text(&config, "issuer"))
            .audience(text(&config, "audience"))
            .snapshot_dir(text(&config, "dir"))
            .build()
            .unwrap()
    });
}

/// Starts an instance process over `idp` with the snapshot directory `dir`.
async fn spawn_instance(idp: &Idp, dir: &Path) -> VerifierProcess {
    let config = serde_json::json!({
        "jwks_url": idp.jwks_url(),
        "issuer": idp.issuer(),
        "audience": idp.audience(),
        "dir": dir,
    });
    VerifierProcess::spawn("instance", INSTANCE_ENV, &config).await
}

async fn provider() -> Idp {
    Idp::builder()
        .key(TestKey::rsa("key-1"))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_started_during_an_outage_verifies_from_the_snapshot_of_a_killed_one() {
    let (idp, dir) = (provider().await, tempfile::tempdir().unwrap());
    let mut first = spawn_instance(&idp, dir.path()).await;
    assert_eq!(first.verify(&idp.mint()).await, "ok");
    assert_eq!(idp.jwks_requests(), 1);
    first.kill().await;

    idp.set_behaviour(Behaviour::Status(503));
    let mut second = spawn_instance(&idp, dir.path()).await;
    for _ in 0..5 {
        assert_eq!(second.verify(&idp.mint()).await, "ok");
    }
    assert_eq!(idp.jwks_requests(), 1, "the new process asked the provider");
    // A token of another key under the same kid is still refused: the snapshot is the
    // provider's set, no more (its failed signature may ask the provider, which is down).
    let stranger = TestKey::rsa("key-1").sign(&idp.claims());
    assert_eq!(second.verify(&stranger).await, "err bad_signature");
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_makes_a_new_process_unavailable_not_crash() {
    let (idp, dir) = (provider().await, tempfile::tempdir().unwrap());
    let mut first = spawn_instance(&idp, dir.path()).await;
    assert_eq!(first.verify(&idp.mint()).await, "ok");
    first.kill().await;
    let snapshot = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "jwks"))
        .expect("a snapshot file");
    let bytes = std::fs::read(&snapshot).unwrap();
    idp.set_behaviour(Behaviour::Status(503));
    for damaged in [
        bytes[..bytes.len() / 2].to_vec(),
        bytes.iter().map(|b| b ^ 0x5a).collect(),
        Vec::new(),
    ] {
        std::fs::write(&snapshot, &damaged).unwrap();
        let mut next = spawn_instance(&idp, dir.path()).await;
        assert_eq!(next.verify(&idp.mint()).await, "err unavailable");
        // Still alive and answering.
        assert_eq!(next.verify(&idp.mint()).await, "err unavailable");
        next.kill().await;
    }
}
