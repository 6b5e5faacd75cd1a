"""Django and Django REST framework integration.

Settings (``settings.JWKSTASH``): every key is a :class:`jwkstash.Verifier` argument in upper
case, plus two of this module's own::

    JWKSTASH = {
        "JWKS_URL": "https://idp.example.com/.well-known/jwks.json",  # or omit: discovery
        "ISSUER": "https://idp.example.com/",
        "AUDIENCE": "my-api",
        "REDIS_URL": "redis://:password@redis:6379",       # optional: the fleet's tier
        "HMAC_SECRET": os.environ["JWKSTASH_HMAC_SECRET"],  # with REDIS_URL
        # "REDIS_PREFIX", "LEEWAY", "ALGORITHMS", "TTL", "MAX_STALE", ... (see Verifier)
        "USER_FACTORY": "myapp.auth.user_from_claims",  # optional: claims -> user
        "REALM": "my-api",                               # optional: WWW-Authenticate realm
    }

- DRF: ``"DEFAULT_AUTHENTICATION_CLASSES": ["jwkstash.django.JWTAuthentication"]`` (or on a
  view). A valid bearer token authenticates ``request.user`` (from ``USER_FACTORY``, by default
  a :class:`JWTUser`) with ``request.auth`` = the claims; an invalid one answers 401 with
  ``WWW-Authenticate: Bearer error="invalid_token"``; unavailable keys answer 503 with
  ``Retry-After``; a malformed ``Authorization`` header answers 400 ``invalid_request``; a
  request without bearer credentials is left to the other classes and the permissions.
- Plain Django views: :class:`JWTMiddleware` (after ``AuthenticationMiddleware``) answers the
  same way for requests that carry a bearer token and sets ``request.jwt_claims`` and
  ``request.user``; :func:`jwt_required` refuses requests without one (401).

One verifier per process is built on first use from the settings (and again when a test changes
``JWKSTASH`` with ``override_settings``); after a ``fork()`` the child builds its own runtime
and connections. DRF is optional: only :class:`JWTAuthentication` needs it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import time
from typing import Any, Callable, Dict, Mapping, Optional

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

from . import InvalidToken, KeysUnavailable, Verifier, _jwkstash

__all__ = [
    "JWTAuthentication",
    "JWTMiddleware",
    "JWTUser",
    "jwt_required",
    "get_verifier",
    "bearer_token",
    "MalformedAuthorization",
]

logger = logging.getLogger("jwkstash")

#: The settings keys that are this module's own, not :class:`Verifier` arguments.
OWN_KEYS = frozenset({"USER_FACTORY", "REALM"})

#: ``Retry-After`` when the verifier does not know when it tries again (as the Rust layer).
DEFAULT_RETRY_AFTER = 5

_verifier: Optional[Verifier] = None


def _config() -> Mapping[str, Any]:
    config = getattr(settings, "JWKSTASH", None)
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            "settings.JWKSTASH must be a dict with at least ISSUER and AUDIENCE "
            "(and JWKS_URL, or discovery from ISSUER)"
        )
    return config


def _verifier_arguments() -> frozenset:
    try:
        return frozenset(inspect.signature(_jwkstash.Verifier).parameters)
    except (TypeError, ValueError):  # no text signature: messages keep the argument names
        return frozenset()


#: The names of :class:`Verifier`'s arguments, which ``JWKSTASH`` spells in upper case.
_ARGUMENTS = _verifier_arguments()

_NAME = re.compile(r"(')?\b([a-z][a-z0-9]*(?:_[a-z0-9]+)*)\b(')?(=?)")


def _as_settings(message: str) -> str:
    """A :class:`Verifier` message in the terms of ``JWKSTASH``: ``allow_http_loopback=True``
    reads ``"ALLOW_HTTP_LOOPBACK": True``; a quoted name (``TypeError``'s) is upper-cased too."""

    def key(match: "re.Match[str]") -> str:
        opening, name, closing, assigned = match.groups()
        if opening and closing:
            return f"'{name.upper()}'{assigned}"
        # Prose words ("audience", "ttl") stay; names with "_" or given a value are settings.
        if name not in _ARGUMENTS or not (assigned or "_" in name):
            return match.group(0)
        return (opening or "") + (f'"{name.upper()}": ' if assigned else name.upper())

    return re.sub(r"  +", " ", _NAME.sub(key, message))


def build_verifier(config: Mapping[str, Any]) -> Verifier:
    """A :class:`Verifier` from a ``JWKSTASH`` settings dict."""
    arguments = {key.lower(): value for key, value in config.items() if key not in OWN_KEYS}
    try:
        return Verifier(**arguments)
    except TypeError as error:  # an unknown or missing key
        raise ImproperlyConfigured(f"settings.JWKSTASH: {_as_settings(str(error))}") from error
    except ValueError as error:  # ConfigurationError
        raise ImproperlyConfigured(f"settings.JWKSTASH: {_as_settings(str(error))}") from error


def get_verifier() -> Verifier:
    """The process's verifier, built from ``settings.JWKSTASH`` on first use."""
    global _verifier
    verifier = _verifier
    if verifier is None:
        # No lock: two threads may both build one on the first requests, and one is dropped.
        # (A lock held by another thread at a fork() would never be released in the child.)
        verifier = _verifier = build_verifier(_config())
    return verifier


def _reset(*, setting: str, **_: Any) -> None:
    global _verifier
    if setting == "JWKSTASH":
        _verifier = None
        _user_factory.cache_clear()


setting_changed.connect(_reset, dispatch_uid="jwkstash.django.reset")


class JWTUser:
    """The user of a verified token, without a database: ``claims`` are the token's claims,
    ``id``, ``pk`` and ``username`` its ``sub``. Set ``USER_FACTORY`` to map claims to your
    own user model instead."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, claims: Dict[str, Any]) -> None:
        self.claims = claims
        self.id = self.pk = self.username = claims.get("sub")

    def get_username(self) -> Any:
        return self.username

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def has_perms(self, perms: Any, obj: Any = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def __str__(self) -> str:
        return str(self.username)

    def __repr__(self) -> str:
        return f"JWTUser(sub={self.username!r})"


@functools.lru_cache(maxsize=None)
def _user_factory() -> Callable[[Dict[str, Any]], Any]:
    factory = _config().get("USER_FACTORY")
    if factory is None:
        return JWTUser
    if isinstance(factory, str):
        return import_string(factory)
    return factory


def _realm() -> Optional[str]:
    realm = _config().get("REALM")
    return str(realm) if realm else None


class MalformedAuthorization(ValueError):
    """The ``Authorization`` header claims the Bearer scheme but is not RFC 6750's syntax."""


_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(meta: Mapping[str, Any]) -> Optional[str]:
    """The bearer token of a request's ``META`` (RFC 6750 §2.1: the scheme case-insensitive,
    one space, a token68), ``None`` without one (no header, or another scheme), or
    :class:`MalformedAuthorization` — the same rules as the Rust layer's ``bearer_token``."""
    header = meta.get("HTTP_AUTHORIZATION")
    if header is None:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedAuthorization("the Authorization header is not ASCII") from None
    scheme, space, token = header.partition(" ")
    if not space:
        if scheme.lower() == "bearer":
            raise MalformedAuthorization("Bearer without a token")
        return None
    if scheme.lower() != "bearer":
        return None
    if not _TOKEN68.fullmatch(token):
        raise MalformedAuthorization("the bearer token is not a token68")
    return token


def challenge(error: Optional[str] = None, realm: Optional[str] = None) -> str:
    """A ``WWW-Authenticate`` value: ``Bearer``, with ``realm`` and ``error`` if given."""
    params = []
    if realm:
        params.append(f'realm="{realm}"')
    if error:
        params.append(f'error="{error}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"


_last_outage_log = 0.0


def _log_unavailable(error: KeysUnavailable) -> None:
    """One warning per 30 s during an outage, not one per request."""
    global _last_outage_log
    now = time.monotonic()
    if now - _last_outage_log >= 30:
        _last_outage_log = now
        logger.warning("jwkstash: answering 503: %s", error)


def _refusal(status: int, error: Optional[str], detail: str) -> HttpResponse:
    response = JsonResponse({"detail": detail}, status=status)
    response["WWW-Authenticate"] = challenge(error, _realm())
    return response


def _unavailable(error: KeysUnavailable) -> HttpResponse:
    _log_unavailable(error)
    response = JsonResponse({"detail": "Signing keys are unavailable."}, status=503)
    response["Retry-After"] = error.retry_after_header(DEFAULT_RETRY_AFTER)
    return response


class JWTMiddleware:
    """Verifies the bearer token of every request that carries one, for plain Django views.

    Valid: ``request.jwt_claims`` holds the claims and ``request.user`` the user. Invalid: 401
    with ``WWW-Authenticate: Bearer error="invalid_token"``. Keys unavailable: 503 with
    ``Retry-After``. Malformed header: 400 ``invalid_request``. No bearer token:
    ``request.jwt_claims`` is None and the view decides (see :func:`jwt_required`). Put it after
    ``django.contrib.auth.middleware.AuthenticationMiddleware`` if you use that.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.jwt_claims = None  # type: ignore[attr-defined]
        try:
            token = bearer_token(request.META)
        except MalformedAuthorization:
            return _refusal(400, "invalid_request", "Malformed Authorization header.")
        if token is not None:
            try:
                claims = get_verifier().verify(token)
            except InvalidToken:
                return _refusal(401, "invalid_token", "Invalid bearer token.")
            except KeysUnavailable as error:
                return _unavailable(error)
            request.jwt_claims = claims  # type: ignore[attr-defined]
            request.user = _user_factory()(claims)  # type: ignore[attr-defined]
        return self.get_response(request)


def jwt_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuses requests that :class:`JWTMiddleware` found no valid bearer token on: 401 with
    ``WWW-Authenticate: Bearer``."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "jwt_claims", None) is None:
            return _refusal(401, None, "Authentication credentials were not provided.")
        return view(request, *args, **kwargs)

    return wrapped


def __getattr__(name: str) -> Any:
    # DRF is optional: its authentication class is made on first access.
    if name == "JWTAuthentication":
        from ._drf import JWTAuthentication

        return JWTAuthentication
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
