"""The exceptions jwkstash raises, mirroring the Rust library's errors.

- :class:`InvalidToken`: the token is refused (answer 401); ``code`` names the rule that failed
  (``"expired"``, ``"bad_signature"``, ``"unknown_kid"``, ...), never the token's content.
- :class:`KeysUnavailable`: the signing keys could not be obtained and no usable copy is left
  (answer 503, not 401); ``retry_after`` says when the next fetch is tried, in seconds.
- :class:`ConfigurationError`: the settings were refused when the verifier was built.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

__all__ = [
    "JwkstashError",
    "InvalidToken",
    "KeysUnavailable",
    "ConfigurationError",
    "SigningKeyNotFound",
]


class JwkstashError(Exception):
    """The base class of jwkstash's exceptions."""


class InvalidToken(JwkstashError):
    """The token is not acceptable: answer 401.

    ``code`` is a short stable name of the rule that failed (the Rust library's
    ``InvalidToken::code()``): ``too_large``, ``malformed``, ``algorithm_not_allowed``,
    ``algorithm_not_supported``, ``unknown_kid``, ``bad_signature``, ``expired``,
    ``not_yet_valid``, ``invalid_issuer``, ``invalid_audience``, ...
    """

    #: The HTTP status a service answers with.
    http_status = 401

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # pickling keeps the code
        return (type(self), (str(self), self.code))


class KeysUnavailable(JwkstashError):
    """The keys to check the token are unavailable: answer 503 with ``Retry-After``.

    The provider failed and no usable key set is left (never fetched, or past ``max_stale``),
    or a token names a ``kid`` the provider could not be asked about yet. The message carries
    the cause. ``retry_after`` is when the next fetch will be tried, in seconds, if known.
    """

    #: The HTTP status a service answers with.
    http_status = 503

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def retry_after_header(self, default: int = 5) -> str:
        """The value of a ``Retry-After`` header: whole seconds, at least 1 (``default``
        when the next attempt is not known), as the Rust tower layer answers."""
        seconds = default if self.retry_after is None else math.ceil(self.retry_after)
        return str(max(1, int(seconds)))

    def __reduce__(self):
        return (type(self), (str(self), self.retry_after))


class ConfigurationError(JwkstashError, ValueError):
    """The verifier's settings are refused (missing issuer or audience, plain http to a host
    that is not this machine, a Redis HMAC secret shorter than 16 bytes, ...)."""


class SigningKeyNotFound(InvalidToken):
    """``get_signing_key_from_jwt`` found no key for the token (even after the refetch the
    verifier's rules allow): ``code`` is ``unknown_kid``, ``algorithm_mismatch`` or
    ``ambiguous_key``. Raised as a ``jwt.PyJWKClientError`` too (see
    :func:`pyjwt_compatible`)."""


@functools.lru_cache(maxsize=None)
def _pyjwt_classes():
    """Subclasses that are both jwkstash's and PyJWT's exceptions, so that code written for
    ``PyJWKClient`` catches what ``get_signing_key_from_jwt`` raises. Made on first use: PyJWT
    is optional."""
    import jwt

    class PyJWKClientSigningKeyNotFound(SigningKeyNotFound, jwt.PyJWKClientError):
        """No signing key matches the token (PyJWT: ``PyJWKClientError``)."""

    class PyJWKClientKeysUnavailable(KeysUnavailable, jwt.PyJWKClientConnectionError):
        """The keys are unavailable (PyJWT: ``PyJWKClientConnectionError``)."""

    class PyJWKClientDecodeError(InvalidToken, jwt.DecodeError):
        """The token's header cannot be read (PyJWT: ``DecodeError``)."""

    for cls in (
        PyJWKClientSigningKeyNotFound,
        PyJWKClientKeysUnavailable,
        PyJWKClientDecodeError,
    ):
        cls.__module__ = __name__
    return PyJWKClientSigningKeyNotFound, PyJWKClientKeysUnavailable, PyJWKClientDecodeError


def pyjwt_compatible(error: JwkstashError) -> JwkstashError:
    """``error`` as the exception ``PyJWKClient.get_signing_key_from_jwt`` would raise,
    still an instance of jwkstash's class."""
    not_found, unavailable, decode = _pyjwt_classes()
    if isinstance(error, SigningKeyNotFound):
        return not_found(str(error), error.code)
    if isinstance(error, KeysUnavailable):
        return unavailable(str(error), error.retry_after)
    if isinstance(error, InvalidToken):
        return decode(str(error), error.code)
    return error
