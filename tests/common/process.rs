//! A verifier in its own OS process, for tests that SIGKILL one.
//!
//! The process is the test binary run again as one ignored test (its `entry`), which acts only
//! when its environment variable carries a JSON config: [`serve`] builds a verifier from that
//! config, then verifies each token read on stdin and answers `@@ ok`, `@@ err <code>` or
//! `@@ err unavailable` on stdout. [`VerifierProcess`] is the parent's handle on it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;
use std::io::{BufRead, Write};
use std::process::Stdio;

use jwkstash::{Verifier, VerifyError};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The child's side: when `env` holds a config, builds the verifier with `build` and serves
/// tokens from stdin until it closes. Without `env` (a plain `--ignored` run) does nothing.
pub(crate) fn serve<F, Fut>(env: &str, build: F)
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Verifier>,
{
    let Ok(config) = std::env::var(env) else {
        return;
    };
    let config: Value = serde_json::from_str(&config).expect("the process's config");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let verifier = runtime.block_on(build(config));
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

/// A config field the parent wrote as a string.
pub(crate) fn text(config: &Value, name: &str) -> String {
    config[name].as_str().expect(name).to_owned()
}

/// A running verifier process.
pub(crate) struct VerifierProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl VerifierProcess {
    /// Runs this test binary's ignored test `entry` with `config` in `env`, and waits until
    /// its verifier is built.
    pub(crate) async fn spawn(entry: &str, env: &str, config: &Value) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                entry,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env, config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut process = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(process.answer().await, "ready");
        process
    }

    async fn answer(&mut self) -> String {
        while let Some(line) = self.stdout.next_line().await.unwrap() {
            // libtest may print its own words before ours on the first line.
            if let Some((_, answer)) = line.split_once("@@ ") {
                return answer.to_owned();
            }
        }
        panic!("the verifier process exited");
    }

    /// The process's answer for `token`: `ok`, `err <code>` or `err unavailable`.
    pub(crate) async fn verify(&mut self, token: &str) -> String {
        self.stdin
            .write_all(format!("{token}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.answer().await
    }

    /// SIGKILL, and wait until the process is gone.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}
