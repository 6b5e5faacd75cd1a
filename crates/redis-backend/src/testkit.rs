//! Real `redis-server` processes for tests (feature `testkit`): one standalone server with a
//! password on a free loopback port (optionally also with TLS, with a [`TestCa`] made at run
//! time), a master behind a Sentinel, or a three-node Cluster. Stopped when dropped.
//!
//! Where `redis-server` is not on `PATH`, [`RedisServer::start`] panics with how to install it,
//! unless [`SKIP_ENV`] is set: then it returns `None` (the test skips) and says how many were
//! skipped.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The password every test server requires.
pub const PASSWORD: &str = "jwkstash-test-password";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn redis_available() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Set to skip the tests that need `redis-server` when it is not installed (they fail otherwise).
pub const SKIP_ENV: &str = "JWKSTASH_SKIP_REDIS";

/// Whether tests needing Redis can run. Without `redis-server` this panics with how to install
/// it, unless [`SKIP_ENV`] is set: then the test is skipped and says how many were skipped in
/// this test binary so far.
pub fn require_redis() -> bool {
    static SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if redis_available() {
        return true;
    }
    if std::env::var_os(SKIP_ENV).is_none() {
        panic!(
            "redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server), \
             or set {SKIP_ENV}=1 to skip the tests that need it"
        );
    }
    let skipped = SKIPPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    eprintln!(
        "\n*** SKIPPED ({SKIP_ENV} is set): redis-server is not on PATH; \
         {skipped} Redis test(s) skipped in this binary so far ***\n"
    );
    false
}

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .finish()
    }
}

impl RedisServer {
    /// Starts a server with [`PASSWORD`] on a free port, or `None` when Redis is not installed
    /// (outside CI).
    pub async fn start() -> Option<Self> {
        Self::start_with(Vec::new()).await
    }

    /// Starts a server that also listens with TLS on a second port ([`tls_url`](Self::tls_url))
    /// with the PEM certificate chain `cert` and key `key` (clients are not asked for
    /// certificates). Debian's redis-server is built with TLS.
    pub async fn start_tls(cert: &str, key: &str) -> Option<Self> {
        if !require_redis() {
            return None;
        }
        let tls_port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "jwkstash-redis-tls-{}-{tls_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert_file, cert).expect("the certificate is written");
        std::fs::write(&key_file, key).expect("the key is written");
        let extra = vec![
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            cert_file.display().to_string(),
            "--tls-key-file".to_owned(),
            key_file.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut server = Self::start_with(extra).await?;
        server.tls_port = Some(tls_port);
        Some(server)
    }

    /// `rediss://:PASSWORD@127.0.0.1:TLS_PORT`, for a server from [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("rediss://:{PASSWORD}@127.0.0.1:{port}"))
    }

    async fn start_with(extra: Vec<String>) -> Option<Self> {
        if !require_redis() {
            return None;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("jwkstash-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mut server = Self {
            port,
            tls_port: None,
            dir,
            child: None,
            extra,
        };
        server.restart().await;
        Some(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--requirepass", PASSWORD, "--masterauth", PASSWORD])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        self.child = Some(command.spawn().expect("redis-server starts"));
        for _ in 0..100 {
            if self.cli(&["PING"]).await.trim() == "PONG" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub async fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-a",
                PASSWORD,
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .await
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three `redis-server --cluster-enabled yes` nodes joined into one Cluster (no replicas).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts and joins three nodes, or `None` when Redis is not installed (outside CI).
    pub async fn start() -> Option<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
            nodes.push(Self::node(extra.iter().map(|s| s.to_string()).collect()).await?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        nodes[0].cli(&args).await;
        for _ in 0..100 {
            let mut ready = true;
            for node in &nodes {
                ready &= node
                    .cli(&["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok");
            }
            if ready {
                return Some(Self { nodes });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the redis cluster did not become ready");
    }

    async fn node(extra: Vec<String>) -> Option<RedisServer> {
        RedisServer::start_with(extra).await
    }

    /// Runs `redis-cli` against the first node.
    pub async fn cli(&self, args: &[&str]) -> String {
        self.nodes[0].cli(args).await
    }

    /// `redis-cluster://:PASSWORD@127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let others: Vec<String> = self.nodes[1..]
            .iter()
            .map(|node| format!("node=127.0.0.1:{}", node.port))
            .collect();
        format!(
            "redis-cluster://:{PASSWORD}@127.0.0.1:{}?{}",
            self.nodes[0].port,
            others.join("&")
        )
    }
}

/// A master and one Sentinel monitoring it as `mymaster` (both with [`PASSWORD`]).
#[derive(Debug)]
pub struct RedisSentinel {
    master: RedisServer,
    port: u16,
    dir: PathBuf,
    sentinel: Option<Child>,
}

impl RedisSentinel {
    /// Starts a master and a Sentinel, or `None` when Redis is not installed (outside CI).
    pub async fn start() -> Option<Self> {
        let master = RedisServer::start().await?;
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("jwkstash-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\nrequirepass {PASSWORD}\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 1\nsentinel auth-pass mymaster {PASSWORD}\n",
                dir.display(),
                master.port
            ),
        )
        .expect("a sentinel config");
        let sentinel = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server --sentinel starts");
        let sentinel = Self {
            master,
            port,
            dir,
            sentinel: Some(sentinel),
        };
        for _ in 0..100 {
            let answer = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "-a", PASSWORD, "--no-auth-warning"])
                .args(["SENTINEL", "get-master-addr-by-name", "mymaster"])
                .output()
                .await
                .expect("redis-cli runs");
            if String::from_utf8_lossy(&answer.stdout).contains(&sentinel.master.port.to_string()) {
                return Some(sentinel);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sentinel did not come up");
    }

    /// `redis-sentinel://:PASSWORD@127.0.0.1:PORT/0?sentinelServiceName=mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://:{PASSWORD}@127.0.0.1:{}/0?sentinelServiceName=mymaster",
            self.port
        )
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(child) = self.sentinel.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test CA made at run time and a server certificate it signed for `127.0.0.1` and
/// `localhost`, all PEM: for [`RedisServer::start_tls`] and [`tls_config`].
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (the root a client trusts).
    pub ca: String,
    /// The server certificate.
    pub cert: String,
    /// The server's private key.
    pub key: String,
}

impl TestCa {
    /// A fresh CA and server certificate.
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = ca_params
            .self_signed(&ca_key)
            .expect("a CA certificate")
            .pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let leaf = CertificateParams::new(names).expect("server parameters");
        let key = KeyPair::generate().expect("a server key");
        let cert = leaf
            .signed_by(&key, &issuer)
            .expect("a server certificate")
            .pem();
        Self {
            ca,
            cert,
            key: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A fred configuration for `url` (`rediss://...`) that trusts the root `ca_pem` only.
pub fn tls_config(url: &str, ca_pem: &str) -> fred::prelude::Config {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable root");
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut config = fred::prelude::Config::from_url(url).expect("a redis url");
    config.tls = Some(fred::types::config::TlsConnector::from(client).into());
    config
}
