"""jwkstash: validate JWTs against an identity provider's JWKS, calling the provider as rarely
as correctness allows.

The verification is the Rust library's, with its cache stack: parsed keys in process, an
optional Redis tier shared with every other instance of the fleet (Rust services included),
refresh ahead of expiry in the background, the last good set served through a provider outage
for a bounded time, and at most one refetch per cooldown for unknown ``kid``\\ s.

>>> import jwkstash
>>> verifier = jwkstash.Verifier(
...     jwks_url="https://idp.example.com/.well-known/jwks.json",
...     issuer="https://idp.example.com/",
...     audience="my-api",
... )  # doctest: +SKIP
>>> claims = verifier.verify(token)  # doctest: +SKIP

Errors: :class:`InvalidToken` (401, ``.code``), :class:`KeysUnavailable` (503,
``.retry_after``), :class:`ConfigurationError` (settings refused).
Django and DRF: :mod:`jwkstash.django`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Tuple, Union

from . import _jwkstash
from ._certificates import with_certificate_key
from .exceptions import (
    ConfigurationError,
    InvalidToken,
    JwkstashError,
    KeysUnavailable,
    SigningKeyNotFound,
    pyjwt_compatible,
)

if TYPE_CHECKING:  # PyJWT is optional
    import jwt

__version__: str = _jwkstash.__version__

__all__ = [
    "Verifier",
    "InvalidToken",
    "KeysUnavailable",
    "ConfigurationError",
    "SigningKeyNotFound",
    "JwkstashError",
    "__version__",
]


class Verifier(_jwkstash.Verifier):
    """Verifies JWTs of one issuer against its JWKS.

    Build one per issuer and process-wide share it (it is thread-safe; verification runs
    without the GIL). Keyword arguments, all but ``issuer`` optional:

    - ``jwks_url``: the JWKS URL (https; plain http only to loopback hosts with
      ``allow_http_loopback=True``). Without it the keys are found by OpenID Connect discovery
      from ``issuer``.
    - ``issuer``: the ``iss`` tokens must name (a str, or a list of spellings).
    - ``audience``: an accepted ``aud`` (a str or a list), or ``any_audience=True``.
    - ``redis_url``, ``redis_prefix`` (default ``"jwkstash"``), ``hmac_secret`` (str or bytes,
      at least 16 bytes; required with Redis unless ``insecure_unauthenticated_redis=True``),
      ``previous_hmac_secret``: the fleet's shared tier, the same entries as Rust services on
      the same prefix and secret.
    - ``algorithms`` (names), ``leeway``, ``max_token_bytes``, ``require_typ``,
      ``accept_future_iat``, ``max_token_lifetime``, ``lease_ttl``,
      ``verified_token_cache=(capacity, ttl)``.
    - Freshness policy, in seconds: ``ttl``, ``min_ttl``, ``max_ttl``, ``refresh_ahead``,
      ``max_stale``, ``unknown_kid_cooldown``, ``unknown_kid_wait``, ``negative_ttl``,
      ``backoff_initial``, ``backoff_max``, ``min_refresh_interval``, ``fetch_timeout``.

    Safe across ``fork()`` (gunicorn ``--preload``): a forked child builds its own runtime and
    connections the first time it uses the verifier, and never touches the parent's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The Rust constructor took the settings; here only the PyJWK cache is set up.
        self._pyjwks: Dict[Tuple[int, int], "jwt.PyJWK"] = {}

    def get_signing_key_from_jwt(self, token: Union[str, bytes]) -> "jwt.PyJWK":
        """The signing key of ``token`` as a ``jwt.PyJWK``, like
        ``jwt.PyJWKClient.get_signing_key_from_jwt``, from this verifier's cache stack: for code
        that keeps PyJWT's ``jwt.decode(token, key.key, algorithms=[...], ...)``.

        A ``kid`` the set lacks makes the verifier refetch under its own rules (at most once per
        cooldown, fleet-wide with Redis; a token whose issuer, audience or expiry it would refuse
        spends no refetch). Raises ``jwt.PyJWKClientError`` (also :class:`SigningKeyNotFound`)
        when no key matches, ``jwt.PyJWKClientConnectionError`` (also
        :class:`KeysUnavailable`) when no keys can be had, ``jwt.DecodeError`` (also
        :class:`InvalidToken`) for an unreadable header.
        """
        try:
            ident = self._signing_key_id(token)
            key = self._pyjwks.get(ident)
            if key is not None:
                return key
            jwk = self._published_jwk(*ident)
            if jwk is None:  # the set changed in between: look again in the new one
                ident = self._signing_key_id(token)
                jwk = self._published_jwk(*ident)
        except JwkstashError as error:
            raise pyjwt_compatible(error) from None
        if jwk is None:
            raise pyjwt_compatible(
                SigningKeyNotFound("the key set changed while it was read", "unknown_kid")
            )
        import jwt

        key = jwt.PyJWK(with_certificate_key(json.loads(jwk)))
        # Keys of one set only: a new set (fingerprint) starts the cache afresh.
        if any(cached[0] != ident[0] for cached in self._pyjwks):
            self._pyjwks = {}
        self._pyjwks[ident] = key
        return key

    def get_jwk_set(self) -> "jwt.PyJWKSet":
        """The current key set as a ``jwt.PyJWKSet`` (PyJWKClient's ``get_jwk_set``)."""
        import jwt

        try:
            document = json.loads(self.jwks())
        except JwkstashError as error:
            raise pyjwt_compatible(error) from None
        keys = [with_certificate_key(key) for key in document["keys"] if isinstance(key, dict)]
        return jwt.PyJWKSet(keys)

    def get_signing_keys(self) -> List["jwt.PyJWK"]:
        """The signing keys of the current set that have a ``kid`` (PyJWKClient's
        ``get_signing_keys``)."""
        return [
            key
            for key in self.get_jwk_set().keys
            if key.public_key_use in ("sig", None) and key.key_id
        ]

    def get_signing_key(self, kid: str) -> "jwt.PyJWK":
        """The signing key with this ``kid`` in the current set (PyJWKClient's
        ``get_signing_key``; without a token there is no refetch for an unknown ``kid``: use
        :meth:`get_signing_key_from_jwt`)."""
        for key in self.get_signing_keys():
            if key.key_id == kid:
                return key
        raise pyjwt_compatible(
            SigningKeyNotFound(f'Unable to find a signing key that matches: "{kid}"', "unknown_kid")
        )
