//! A restart during a provider outage, with real processes: a verifier process with a
//! snapshot directory verifies a token and is SIGKILLed; the provider goes down; a new process
//! starts from the snapshot and verifies valid tokens with no request to the provider. A
//! corrupt snapshot makes the next process answer "unavailable", never crash.
//!
//! Each process is this test binary run again as `instance` (an ignored test that acts only
//! when spawned with `JWKSTASH_SNAPSHOT_INSTANCE`): it verifies the tokens it reads on stdin
//! and answers `@@ ok` or `@@ err <code>` on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Stdio;

use jwkstash::testkit::{Behaviour, Idp, TestKey};
use jwkstash::{HttpKeySource, Verifier, VerifyError};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const INSTANCE_ENV: &str = "JWKSTASH_SNAPSHOT_INSTANCE";

/// The instance process: one verifier with a snapshot directory, driven by stdin.
#[test]
#[ignore = "runs only as a spawned instance"]
fn instance() {
    let Ok(config) = std::env::var(INSTANCE_ENV) else {
        return;
    };
    let config: Value = serde_json::from_str(&config).expect("instance config");
    let text = |name: &str| config[name].as_str().expect(name).to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let verifier = runtime.block_on(async {
        let source = HttpKeySource::builder(text("jwks_url"))
            .allow_http(true)
            .build()
            .unwrap();
        Verifier::builder()
            .key_source(source)
            .issuer(text("issuer"))
            .audience(text("audience"))
            .snapshot_dir(text("dir"))
            .build()
            .unwrap()
    });
    let mut out = std::io::stdout();
    writeln!(out, "@@ ready").unwrap();
    out.flush().unwrap();
    for token in std::io::stdin().lock().lines() {
        let token = token.unwrap();
        let answer = match runtime.block_on(verifier.verify::<Value>(&token)) {
            Ok(_) => "ok".to_owned(),
            Err(VerifyError::InvalidToken(reason)) => format!("err {}", reason.code()),
            Err(_) => "err unavailable".to_owned(),
        };
        writeln!(out, "@@ {answer}").unwrap();
        out.flush().unwrap();
    }
}

/// A running instance process.
struct Instance {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Instance {
    async fn spawn(idp: &Idp, dir: &Path) -> Self {
        let config = serde_json::json!({
            "jwks_url": idp.jwks_url(),
            "issuer": idp.issuer(),
            "audience": idp.audience(),
            "dir": dir,
        });
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "instance",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INSTANCE_ENV, config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut instance = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(instance.answer().await, "ready");
        instance
    }

    async fn answer(&mut self) -> String {
        while let Some(line) = self.stdout.next_line().await.unwrap() {
            // libtest may print its own words before ours on the first line.
            if let Some((_, answer)) = line.split_once("@@ ") {
                return answer.to_owned();
            }
        }
        panic!("the instance exited");
    }

    async fn verify(&mut self, token: &str) -> String {
        self.stdin
            .write_all(format!("{token}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.answer().await
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
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
    let mut first = Instance::spawn(&idp, dir.path()).await;
    assert_eq!(first.verify(&idp.mint()).await, "ok");
    assert_eq!(idp.jwks_requests(), 1);
    first.kill().await;

    idp.set_behaviour(Behaviour::Status(503));
    let mut second = Instance::spawn(&idp, dir.path()).await;
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
    let mut first = Instance::spawn(&idp, dir.path()).await;
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
        let mut next = Instance::spawn(&idp, dir.path()).await;
        assert_eq!(next.verify(&idp.mint()).await, "err unavailable");
        // Still alive and answering.
        assert_eq!(next.verify(&idp.mint()).await, "err unavailable");
        next.kill().await;
    }
}
