"""The Python Verifier against a real identity provider on 127.0.0.1: how often the provider
is asked, rotation, outages, the errors, and the GIL."""

from __future__ import annotations

import math
import threading
import time
import uuid

import jwt
import pytest

import jwkstash
from jwkstash.testing import ManualClock
from support import AUDIENCE, Provider, eventually, signing_key


def test_many_requests_fetch_the_keys_once(provider: Provider) -> None:
    """The seed's own assertion, done properly: many verifications, on a cold verifier and
    from several threads at once, and the provider (counted at its HTTP server) is asked once."""
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    token = provider.mint()

    # The seed's test: four calls, one upstream fetch.
    for _ in range(4):
        assert verifier.verify(token)["sub"] == "user-1"
    assert provider.requests == 1

    # Then 8 threads × 250 verifications on a second, cold verifier: still one fetch for it.
    cold = jwkstash.Verifier(**provider.verifier_settings())
    start = threading.Barrier(8)
    failures: list = []

    def work() -> None:
        start.wait()
        for _ in range(250):
            try:
                cold.verify(token)
            except Exception as error:  # collected and reported below
                failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert provider.requests == 2
    stats = cold.stats()
    assert stats["verified"] == 2000
    assert stats["fetches"] == 1


def test_rotation_is_accepted_on_the_first_token_of_the_new_key(provider: Provider) -> None:
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    old = signing_key("key-1")
    assert verifier.verify(provider.mint(old))["sub"] == "user-1"
    assert provider.requests == 1

    # The provider rotates: a new key, the old one removed.
    new = signing_key("key-2", "ES256")
    provider.publish([new])
    assert verifier.verify(provider.mint(new, sub="user-2"))["sub"] == "user-2"
    assert provider.requests == 2
    assert verifier.stats()["fetches_unknown_kid"] == 1

    # The removed key stops validating: a set fetched after its token was issued (plus the
    # leeway for the provider's clock, 60 s) lacks it, so the provider said it is gone.
    with pytest.raises(jwkstash.InvalidToken) as refused:
        verifier.verify(provider.mint(old, iat=int(time.time()) - 120))
    assert refused.value.code == "unknown_kid"

    # A flood of junk kids costs the provider nothing more within the cooldown (30 s), and is
    # never a 401 for a kid the provider has not been asked about: 503 with a Retry-After.
    junk = signing_key("junk", "ES256")
    for _ in range(50):
        junk.kid = f"junk-{uuid.uuid4().hex}"
        with pytest.raises(jwkstash.KeysUnavailable) as unavailable:
            verifier.verify(provider.mint(junk))
        assert unavailable.value.retry_after is not None and unavailable.value.retry_after > 0
    assert provider.requests == 2
    # Valid tokens never waited meanwhile.
    assert verifier.verify(provider.mint(new))["sub"] == "user-1"


def test_provider_down_valid_tokens_keep_verifying(provider: Provider) -> None:
    clock = ManualClock()
    verifier = jwkstash.Verifier(**provider.verifier_settings(clock=clock))
    token = provider.mint()
    assert verifier.verify(token)["sub"] == "user-1"
    assert verifier.health()["state"] == "fresh"

    provider.failing = True
    clock.advance(11 * 60)  # past the TTL (10 min): the set is stale, its refresh fails
    for _ in range(200):
        assert verifier.verify(token)["sub"] == "user-1"
    eventually("the refresh failed", lambda: verifier.stats()["fetch_failures"] >= 1)
    for _ in range(200):
        assert verifier.verify(token)["sub"] == "user-1"
    health = verifier.health()
    assert health["state"] == "stale" and health["ready"] is True
    stats = verifier.stats()
    assert stats["stale_served"] >= 400
    assert provider.requests == 2  # it asked once, the provider failed, and it backs off

    # The provider is back; past the backoff (1 s) the next verification refreshes.
    provider.failing = False
    clock.advance(2)
    assert verifier.verify(token)["sub"] == "user-1"
    eventually("the set is fresh again", lambda: verifier.health()["state"] == "fresh")
    assert provider.requests == 3


def test_cold_start_while_the_provider_is_down_is_keys_unavailable(provider: Provider) -> None:
    provider.failing = True
    # The clock stands still: the second call falls inside the backoff (1 s) however slow
    # the machine is.
    verifier = jwkstash.Verifier(**provider.verifier_settings(clock=ManualClock()))
    token = provider.mint()
    with pytest.raises(jwkstash.KeysUnavailable) as first:
        verifier.verify(token)
    assert first.value.http_status == 503
    assert "could not" in str(first.value) or "503" in str(first.value)
    # Backing off: answered at once, with when to retry, and the provider is not asked again.
    with pytest.raises(jwkstash.KeysUnavailable) as second:
        verifier.verify(token)
    assert second.value.retry_after is not None and 0 < second.value.retry_after <= 1.0
    assert second.value.retry_after_header() == str(math.ceil(second.value.retry_after))
    assert provider.requests == 1
    assert verifier.health() == {
        "ready": False,
        "state": "unavailable",
        "retry_after": pytest.approx(second.value.retry_after, abs=0.5),
    }


def test_invalid_tokens_name_their_rule(provider: Provider) -> None:
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    key = signing_key("key-1")
    forged = signing_key("forger")
    now = int(time.time())
    cases = {
        "expired": provider.mint(iat=now - 7200, exp=now - 3600),
        "invalid_audience": provider.mint(aud="another-api"),
        "invalid_issuer": provider.mint(iss="https://evil.example/"),
        "malformed": "not-a-token",
        "algorithm_not_allowed": jwt.encode(
            {"iss": provider.issuer, "aud": AUDIENCE, "exp": now + 60},
            "a-shared-secret-of-enough-length",
            algorithm="HS256",
            headers={"kid": "key-1"},
        ),
    }
    # Signed by another key under the real kid.
    forged_token = jwt.encode(
        {"iss": provider.issuer, "aud": AUDIENCE, "exp": now + 60, "iat": now},
        forged.private,
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    cases["bad_signature"] = forged_token
    for code, token in cases.items():
        with pytest.raises(jwkstash.InvalidToken) as refused:
            verifier.verify(token)
        assert refused.value.code == code, (code, str(refused.value))
        assert refused.value.http_status == 401
        assert token not in str(refused.value)
    # Bytes are accepted as well as str (DRF hands headers over as bytes).
    assert verifier.verify(provider.mint().encode())["sub"] == "user-1"
    with pytest.raises(jwkstash.InvalidToken) as not_utf8:
        verifier.verify(b"\xff\xfe.a.b")
    assert not_utf8.value.code == "malformed"
    with pytest.raises(TypeError):
        verifier.verify(42)  # type: ignore[arg-type]


def test_configuration_errors_are_raised_at_construction(provider: Provider) -> None:
    def refused(**settings) -> str:
        with pytest.raises(jwkstash.ConfigurationError) as error:
            jwkstash.Verifier(**settings)
        assert isinstance(error.value, ValueError)
        return str(error.value)

    # Each message names the keyword argument to change, never a Rust builder method.
    messages = [
        refused(**provider.verifier_settings(audience=None)),
        refused(jwks_url="http://idp.example.com/jwks.json", issuer="x", audience="a"),
        refused(**provider.verifier_settings(hmac_secret="x" * 32)),
        refused(**provider.verifier_settings(ttl=-1)),
        refused(**provider.verifier_settings(algorithms=["HS256"])),
        refused(**provider.verifier_settings(algorithms=[])),
    ]
    no_audience, plain_http, secret_without_redis, negative_ttl, hs256, no_algorithm = messages
    assert "audience=" in no_audience and "any_audience=True" in no_audience
    assert "plain http" in plain_http and "allow_http_loopback=True" in plain_http
    assert "redis_url" in secret_without_redis
    assert "ttl" in negative_ttl
    assert "HS256" in hs256
    assert "algorithms=[]" in no_algorithm
    for message in messages:
        assert "()" not in message, message
    with pytest.raises(TypeError):
        jwkstash.Verifier(**provider.verifier_settings(no_such_setting=1))


def test_redis_settings_are_checked(provider: Provider, redis, prefix: str) -> None:
    with pytest.raises(jwkstash.ConfigurationError, match="16 bytes"):
        jwkstash.Verifier(
            **provider.verifier_settings(
                redis_url=redis.url, redis_prefix=prefix, hmac_secret="short"
            )
        )
    with pytest.raises(jwkstash.ConfigurationError) as no_secret:
        jwkstash.Verifier(**provider.verifier_settings(redis_url=redis.url, redis_prefix=prefix))
    assert "hmac_secret=" in str(no_secret.value)
    assert "insecure_unauthenticated_redis=True" in str(no_secret.value)
    with pytest.raises(jwkstash.ConfigurationError, match="redis_prefix"):
        jwkstash.Verifier(
            **provider.verifier_settings(
                redis_url=redis.url, redis_prefix="bad prefix", hmac_secret="x" * 32
            )
        )


def test_refresh_stats_health_and_jwks(provider: Provider) -> None:
    verifier = jwkstash.Verifier(**provider.verifier_settings(min_refresh_interval=30))
    verifier.prefetch()
    assert provider.requests == 1
    assert '"key-1"' in verifier.jwks()
    assert verifier.issuers == [provider.issuer]

    provider.publish([signing_key("key-1"), signing_key("key-2", "ES256")])
    refreshed = verifier.refresh()
    assert refreshed == {"fetched": True, "kids": ["key-1", "key-2"]}
    assert provider.requests == 2
    # Coalesced: a second refresh within min_refresh_interval shares the first.
    assert verifier.refresh()["fetched"] is False
    assert provider.requests == 2
    stats = verifier.stats()
    assert stats["fetches_forced"] == 1 and stats["fetches_cold"] == 1
    assert verifier.health()["state"] == "fresh"
    assert verifier.health()["until"] > time.time()


def test_verification_runs_without_the_gil(provider: Provider) -> None:
    """While one thread waits in verify (a cold fetch the provider holds open), another thread
    runs Python code; had verify held the GIL, nothing else could run until it returned. The
    provider answers only when the test releases it, after the other thread has run."""
    provider.hold()
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    token = provider.mint()
    result: dict = {}
    waiting = threading.Thread(target=lambda: result.update(verifier.verify(token)))
    waiting.start()
    eventually("the fetch reached the provider", lambda: provider.open_requests == 1)
    spins = 0
    while spins < 100_000:
        spins += 1
    assert waiting.is_alive() and provider.open_requests == 1, "verify did not wait"
    provider.release()
    waiting.join()
    assert result["sub"] == "user-1"