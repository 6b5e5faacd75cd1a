"""Real parts for the tests: an identity provider on 127.0.0.1 (a small HTTP server serving a
JWKS and counting requests, keys from `cryptography`, tokens signed with PyJWT), a real
`redis-server` on a free loopback port (started as the Rust tests start theirs), and the Rust
member of a fleet (examples/fleet_peer.rs) driven over stdin/stdout.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REDIS_PASSWORD = "jwkstash-test-password"
SKIP_ENV = "JWKSTASH_SKIP_REDIS"
#: The redis-server binary (JWKSTASH_REDIS_SERVER names another one).
REDIS_SERVER = os.environ.get("JWKSTASH_REDIS_SERVER", "redis-server")
AUDIENCE = "my-api"
#: The fleet's HMAC secret in these tests (never stored in Redis).
HMAC_SECRET = "a-test-secret-of-32-bytes-length"


class SigningKey:
    """A signing key with its public JWK."""

    def __init__(self, kid: str, alg: str) -> None:
        self.kid = kid
        self.alg = alg
        if alg.startswith("RS") or alg.startswith("PS"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        self.jwk: Dict[str, Any] = jwk


_KEYS: Dict[tuple, SigningKey] = {}


def certified_only(key: SigningKey, kid: str) -> SigningKey:
    """``key`` published as many providers do for certificates: a self-signed certificate in
    ``x5c`` and no key members of its own (no ``n``/``e``, no ``x``/``y``)."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwkstash test provider")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key.private, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    certified = SigningKey.__new__(SigningKey)
    certified.kid, certified.alg, certified.private = kid, key.alg, key.private
    certified.jwk = {
        "kty": key.jwk["kty"],
        "kid": kid,
        "alg": key.alg,
        "use": "sig",
        "x5c": [base64.b64encode(der).decode()],
    }
    return certified


def signing_key(kid: str, alg: str = "RS256") -> SigningKey:
    """A key, generated once per test session (RSA generation takes a while)."""
    if (kid, alg) not in _KEYS:
        _KEYS[(kid, alg)] = SigningKey(kid, alg)
    return _KEYS[(kid, alg)]


class Provider:
    """An identity provider on 127.0.0.1: serves its JWKS at ``url`` and counts the requests;
    ``failing = True`` answers 503 (a provider outage); ``delay`` holds each answer back;
    ``hold()`` keeps every request open (counted in ``open_requests``) until ``release()``."""

    def __init__(self, keys: List[SigningKey]) -> None:
        self.keys = list(keys)
        self.requests = 0
        self.failing = False
        self.delay = 0.0
        self.open_requests = 0
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                with provider._lock:
                    provider.requests += 1
                    failing, delay = provider.failing, provider.delay
                    body = json.dumps({"keys": [key.jwk for key in provider.keys]}).encode()
                if delay:
                    time.sleep(delay)
                with provider._lock:
                    provider.open_requests += 1
                provider._released.wait()
                with provider._lock:
                    provider.open_requests -= 1
                if failing:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.issuer = f"http://127.0.0.1:{port}/"
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        """Keeps every request open until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        """Lets the held requests answer."""
        self._released.set()

    def publish(self, keys: List[SigningKey]) -> None:
        """Replaces the published keys (a rotation)."""
        with self._lock:
            self.keys = list(keys)

    def mint(self, key: Optional[SigningKey] = None, **claims: Any) -> str:
        """A token signed with ``key`` (default: the first published key), valid for an hour."""
        key = key or self.keys[0]
        now = int(time.time())
        body: Dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + 3600,
        }
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid})

    def verifier_settings(self, **overrides: Any) -> Dict[str, Any]:
        """The arguments of a ``jwkstash.Verifier`` for this provider."""
        settings: Dict[str, Any] = {
            "jwks_url": self.url,
            "issuer": self.issuer,
            "audience": AUDIENCE,
            "allow_http_loopback": True,
        }
        settings.update(overrides)
        return settings

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 with a password."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="jwkstash-redis-")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--requirepass",
                REDIS_PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    @property
    def url(self) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
                answer = b""
                while b"PONG" not in answer:
                    chunk = conn.recv(64)
                    if not chunk:
                        return False
                    answer += chunk
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def eventually(what: str, condition, timeout: float = 10.0) -> None:
    """Waits until ``condition()`` holds; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"never happened within {timeout} s: {what}")


#: The repository's root (bindings/python/tests -> ../../..).
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PEER_ENV = "JWKSTASH_FLEET_PEER"


def peer_binary() -> str:
    """The Rust fleet peer: $JWKSTASH_FLEET_PEER, else the workspace's debug build."""
    path = os.environ.get(PEER_ENV) or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"),
        "debug",
        "examples",
        "fleet_peer",
    )
    if not os.path.exists(path):
        pytest.fail(
            f"the Rust fleet peer is not built at {path}: run "
            "`cargo build -p jwkstash-python --example fleet_peer` (scripts/test-python.sh "
            f"does), or point {PEER_ENV} at it",
            pytrace=False,
        )
    return path


class RustPeer:
    """A Rust verifier process (examples/fleet_peer.rs) on a shared Redis tier."""

    def __init__(
        self,
        provider: Provider,
        redis: RedisServer,
        prefix: str,
        secret: str = HMAC_SECRET,
        min_refresh_interval_ms: int = 200,
    ) -> None:
        env = dict(os.environ)
        env["JWKSTASH_HMAC_SECRET"] = secret
        env["JWKSTASH_PEER_MIN_REFRESH_MS"] = str(min_refresh_interval_ms)
        self.process = subprocess.Popen(
            [peer_binary(), provider.url, provider.issuer, AUDIENCE, redis.url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._answer() == "ready"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _answer(self, timeout: float = 30.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the Rust peer did not answer within {timeout} s")
        if line is None:
            pytest.fail(f"the Rust peer exited ({self.process.wait()})")
        return line

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._answer()

    def verify(self, token: str) -> str:
        """``ok``, ``err CODE`` or ``err unavailable``."""
        return self.ask(f"verify {token}")

    def refresh(self) -> str:
        return self.ask("refresh")

    def kids(self) -> List[str]:
        return self.ask("kids").split()

    def stats(self) -> Dict[str, int]:
        return {
            name: int(value)
            for name, value in (pair.split("=") for pair in self.ask("stats").split())
        }

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
