"""One fleet across languages: a Python process (this one) and a Rust process
(examples/fleet_peer.rs, built with the facade's own builders) on the same Redis prefix and
HMAC secret share one upstream fetch and one invalidation: the same entry name (the Rust
builder computes it from issuer and JWKS URL on both sides), the same envelope, the same MAC."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest

import jwkstash
from support import HMAC_SECRET, Provider, RedisServer, RustPeer, eventually, signing_key


@pytest.fixture
def peer(provider: Provider, redis: RedisServer, prefix: str) -> Iterator[RustPeer]:
    rust = RustPeer(provider, redis, prefix)
    yield rust
    rust.close()


def python_verifier(
    provider: Provider, redis: RedisServer, prefix: str, **settings
) -> jwkstash.Verifier:
    settings.setdefault("hmac_secret", HMAC_SECRET)
    settings.setdefault("min_refresh_interval", 0.2)
    return jwkstash.Verifier(
        **provider.verifier_settings(redis_url=redis.url, redis_prefix=prefix, **settings)
    )


def test_rust_fetches_python_reads_the_entry(
    provider: Provider, redis: RedisServer, prefix: str, peer: RustPeer
) -> None:
    token = provider.mint()
    assert peer.verify(token) == "ok"
    assert provider.requests == 1
    python = python_verifier(provider, redis, prefix)
    for _ in range(100):
        assert python.verify(token)["sub"] == "user-1"
    assert provider.requests == 1
    stats = python.stats()
    assert stats["fetches"] == 0 and stats["shared_hits"] == 1


def test_python_fetches_rust_reads_the_entry(
    provider: Provider, redis: RedisServer, prefix: str
) -> None:
    python = python_verifier(provider, redis, prefix)
    token = provider.mint()
    assert python.verify(token)["sub"] == "user-1"
    assert provider.requests == 1
    rust = RustPeer(provider, redis, prefix)
    try:
        for _ in range(20):
            assert rust.verify(token) == "ok"
        stats = rust.stats()
    finally:
        rust.close()
    assert stats["fetches"] == 0 and stats["shared_hits"] == 1
    assert provider.requests == 1


def test_cold_start_together_is_one_fetch(
    provider: Provider, redis: RedisServer, prefix: str, peer: RustPeer
) -> None:
    """Both languages cold at once, the provider slow: the fleet's lease lets one of them fetch."""
    provider.delay = 0.3
    python = python_verifier(provider, redis, prefix)
    token = provider.mint()
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(python.verify(token)["sub"]))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    assert peer.verify(token) == "ok"
    for thread in threads:
        thread.join()
    assert results == ["user-1"] * 4
    assert provider.requests == 1
    assert python.stats()["fetches"] + peer.stats()["fetches"] == 1


def test_one_invalidation_reaches_both_languages(
    provider: Provider, redis: RedisServer, prefix: str, peer: RustPeer
) -> None:
    python = python_verifier(provider, redis, prefix)
    token = provider.mint()
    assert peer.verify(token) == "ok"
    assert python.verify(token)["sub"] == "user-1"
    assert provider.requests == 1

    # Python forces a refresh (an emergency rotation): one fetch, and the Rust process takes
    # the new set from the invalidation, without asking the provider.
    second = signing_key("key-2", "ES256")
    provider.publish([signing_key("key-1"), second])
    assert python.refresh() == {"fetched": True, "kids": ["key-1", "key-2"]}
    assert provider.requests == 2
    eventually("the Rust peer holds key-2", lambda: "key-2" in peer.kids())
    assert peer.verify(provider.mint(second)) == "ok"
    rust = peer.stats()
    assert rust["fetches"] == 1 and rust["invalidations_heard"] >= 1
    assert provider.requests == 2

    # And the other way: Rust refreshes, Python hears it.
    third = signing_key("key-3", "ES256")
    provider.publish([second, third])
    eventually(
        "a second forced refresh is allowed", lambda: peer.refresh() == "refreshed fetched=true"
    )
    assert provider.requests == 3
    eventually("Python holds key-3", lambda: '"key-3"' in python.jwks())
    assert python.verify(provider.mint(third))["sub"] == "user-1"
    stats = python.stats()
    assert stats["fetches"] == 1  # its own refresh only
    assert stats["invalidations_heard"] >= 1
    assert provider.requests == 3


def test_another_hmac_secret_is_not_trusted(
    provider: Provider, redis: RedisServer, prefix: str, peer: RustPeer
) -> None:
    """The MAC is checked across languages: a Python verifier with another secret refuses the
    Rust peer's entry (it reads as a miss) and fetches for itself."""
    token = provider.mint()
    assert peer.verify(token) == "ok"
    stranger = python_verifier(
        provider, redis, prefix, hmac_secret="another-secret-of-32-bytes-long!"
    )
    assert stranger.verify(token)["sub"] == "user-1"
    assert stranger.stats()["fetches"] == 1
    assert provider.requests == 2
