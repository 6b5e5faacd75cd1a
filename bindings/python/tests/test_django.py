"""Django's test client against a DRF view with `jwkstash.django.JWTAuthentication`, and plain
Django views behind `JWTMiddleware`, configured from `settings.JWKSTASH`, against the real
identity provider on 127.0.0.1."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="jwkstash-tests",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="djangoapp.urls",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        MIDDLEWARE=[],
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["jwkstash.django.JWTAuthentication"],
            "UNAUTHENTICATED_USER": None,
        },
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

import jwkstash  # noqa: E402
from jwkstash import django as jwkstash_django  # noqa: E402
from jwkstash.testing import ManualClock  # noqa: E402
from support import HMAC_SECRET, Provider, RedisServer  # noqa: E402

MIDDLEWARE = ["jwkstash.django.JWTMiddleware"]


def jwkstash_settings(provider: Provider, **extra: Any) -> Dict[str, Any]:
    config = {
        "JWKS_URL": provider.url,
        "ISSUER": provider.issuer,
        "AUDIENCE": "my-api",
        "ALLOW_HTTP_LOOPBACK": True,
    }
    config.update(extra)
    return config


@pytest.fixture
def configured(provider: Provider) -> Iterator[Provider]:
    # A clock that stands still: a second request after a failed fetch falls inside the backoff
    # however slow the machine is.
    with override_settings(JWKSTASH=jwkstash_settings(provider, CLOCK=ManualClock())):
        yield provider


def bearer(token: str) -> Dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_drf_valid_token(configured: Provider) -> None:
    response = Client().get("/api/me", **bearer(configured.mint()))
    assert response.status_code == 200, response.content
    assert response.json() == {"user": "user-1", "sub": "user-1", "type": "JWTUser"}
    # And through DEFAULT_AUTHENTICATION_CLASSES' dotted path.
    response = Client().get("/api/default", **bearer(configured.mint(sub="user-2")))
    assert response.status_code == 200 and response.json() == {"sub": "user-2"}


def test_drf_many_requests_one_fetch(configured: Provider) -> None:
    client = Client()
    for index in range(50):
        response = client.get("/api/me", **bearer(configured.mint(sub=f"user-{index}")))
        assert response.status_code == 200
    assert configured.requests == 1


def test_drf_without_credentials_is_401_with_a_plain_challenge(configured: Provider) -> None:
    response = Client().get("/api/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    # Another scheme is not ours: the same answer.
    response = Client().get("/api/me", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert configured.requests == 0


def test_drf_invalid_token_is_401_invalid_token(configured: Provider) -> None:
    token = configured.mint(aud="another-api")
    response = Client().get("/api/me", **bearer(token))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert token not in response.content.decode()
    response = Client().get("/api/me", **bearer("a.b.c"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_drf_malformed_header_is_400_invalid_request(configured: Provider) -> None:
    for header in ["Bearer", "Bearer  two-spaces", "Bearer a b", "bearer tok=en"]:
        response = Client().get("/api/me", HTTP_AUTHORIZATION=header)
        assert response.status_code == 400, header
        assert response["WWW-Authenticate"] == 'Bearer error="invalid_request"'


def test_drf_keys_unavailable_is_503_with_retry_after(configured: Provider) -> None:
    configured.failing = True
    token = configured.mint()
    for _ in range(2):
        response = Client().get("/api/me", **bearer(token))
        assert response.status_code == 503
        assert int(response["Retry-After"]) >= 1
        assert "WWW-Authenticate" not in response
    assert configured.requests == 1  # backing off: the second request did not ask again


class CustomUser(jwkstash_django.JWTUser):
    def __str__(self) -> str:
        return f"custom:{self.username}"


def user_from_claims(claims: Dict[str, Any]) -> Any:
    """A USER_FACTORY for the tests."""
    return CustomUser(claims)


def test_realm_and_user_factory(provider: Provider) -> None:
    config = jwkstash_settings(
        provider, REALM="my-api", USER_FACTORY="test_django.user_from_claims"
    )
    with override_settings(JWKSTASH=config):
        response = Client().get("/api/me", **bearer(provider.mint()))
        assert response.status_code == 200
        assert response.json()["user"] == "custom:user-1"
        response = Client().get("/api/me", **bearer("a.b.c"))
        assert response["WWW-Authenticate"] == 'Bearer realm="my-api", error="invalid_token"'


def test_middleware_on_plain_views(configured: Provider) -> None:
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        client = Client()
        response = client.get("/protected", **bearer(configured.mint()))
        assert response.status_code == 200
        assert response.json() == {"sub": "user-1", "user": "user-1"}

        assert client.get("/plain").json() == {"sub": None}
        response = client.get("/protected")
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"

        response = client.get("/plain", **bearer(configured.mint(iat=0, exp=1)))
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'

        response = client.get("/plain", HTTP_AUTHORIZATION="Bearer a b")
        assert response.status_code == 400
        assert response["WWW-Authenticate"] == 'Bearer error="invalid_request"'


def test_middleware_keys_unavailable(configured: Provider) -> None:
    configured.failing = True
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        response = Client().get("/plain", **bearer(configured.mint()))
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1


def test_settings_with_redis_share_the_fleet(
    provider: Provider, redis: RedisServer, prefix: str
) -> None:
    """A Django process configured with REDIS_URL reads the entry another verifier of the fleet
    (here a plain jwkstash.Verifier on the same prefix and secret) fetched."""
    other = jwkstash.Verifier(
        **provider.verifier_settings(
            redis_url=redis.url, redis_prefix=prefix, hmac_secret=HMAC_SECRET
        )
    )
    other.prefetch()
    config = jwkstash_settings(
        provider, REDIS_URL=redis.url, REDIS_PREFIX=prefix, HMAC_SECRET=HMAC_SECRET
    )
    with override_settings(JWKSTASH=config):
        response = Client().get("/api/me", **bearer(provider.mint()))
        assert response.status_code == 200
        stats = jwkstash_django.get_verifier().stats()
    assert stats["fetches"] == 0 and stats["shared_hits"] == 1
    assert provider.requests == 1


def test_bad_settings_are_improperly_configured(provider: Provider) -> None:
    with override_settings(JWKSTASH={"JWKS_URL": provider.url, "AUDIENCE": "a"}):
        with pytest.raises(ImproperlyConfigured, match="'ISSUER'"):
            jwkstash_django.get_verifier()
    with override_settings(JWKSTASH=jwkstash_settings(provider, NO_SUCH_SETTING=1)):
        with pytest.raises(ImproperlyConfigured, match="'NO_SUCH_SETTING'"):
            jwkstash_django.get_verifier()
    # The message names the settings key to change, as JWKSTASH spells it.
    with override_settings(JWKSTASH=jwkstash_settings(provider, ALLOW_HTTP_LOOPBACK=False)):
        with pytest.raises(ImproperlyConfigured, match="plain http") as plain_http:
            jwkstash_django.get_verifier()
    assert '"ALLOW_HTTP_LOOPBACK": True' in str(plain_http.value)
    without_audience = {
        key: value for key, value in jwkstash_settings(provider).items() if key != "AUDIENCE"
    }
    with override_settings(JWKSTASH=without_audience):
        with pytest.raises(ImproperlyConfigured) as no_audience:
            jwkstash_django.get_verifier()
    assert '"AUDIENCE":' in str(no_audience.value)
    assert '"ANY_AUDIENCE": True' in str(no_audience.value)
    assert "any audience" in str(no_audience.value)
