"""The Django REST framework authentication class (imported by ``jwkstash.django`` on first
use of ``JWTAuthentication``, so that DRF stays optional)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

try:
    from rest_framework import exceptions, status
    from rest_framework.authentication import BaseAuthentication
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "jwkstash.django.JWTAuthentication needs Django REST framework: "
        "pip install djangorestframework"
    ) from error

from . import InvalidToken, KeysUnavailable
from .django import (
    DEFAULT_RETRY_AFTER,
    MalformedAuthorization,
    _log_unavailable,
    _realm,
    _user_factory,
    bearer_token,
    challenge,
    get_verifier,
)

#: Where a refusal's error code waits for ``authenticate_header`` on the request.
_ERROR = "_jwkstash_error"


class KeysUnavailableError(exceptions.APIException):
    """503 with ``Retry-After`` (DRF's handler writes the header from ``wait``)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Signing keys are unavailable."
    default_code = "keys_unavailable"

    def __init__(self, error: KeysUnavailable) -> None:
        super().__init__()
        self.wait = int(error.retry_after_header(DEFAULT_RETRY_AFTER))


class InvalidRequest(exceptions.APIException):
    """400 with ``WWW-Authenticate: Bearer error="invalid_request"`` (RFC 6750 §3.1)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Malformed Authorization header."
    default_code = "invalid_request"

    def __init__(self) -> None:
        super().__init__()
        self.auth_header = challenge("invalid_request", _realm())


class JWTAuthentication(BaseAuthentication):
    """DRF authentication by ``Authorization: Bearer <JWT>``, verified by the process's
    :class:`jwkstash.Verifier` (``settings.JWKSTASH``).

    ``request.user`` is built by ``USER_FACTORY`` (default :class:`jwkstash.django.JWTUser`),
    ``request.auth`` is the claims dict. Invalid token: 401 with ``WWW-Authenticate: Bearer
    error="invalid_token"``. Keys unavailable: 503 with ``Retry-After``. No bearer token: None
    (other classes and the permissions decide; DRF then answers 401 with ``WWW-Authenticate:
    Bearer``).
    """

    def authenticate(self, request: Any) -> Optional[Tuple[Any, Dict[str, Any]]]:
        try:
            token = bearer_token(request.META)
        except MalformedAuthorization:
            raise InvalidRequest() from None
        if token is None:
            return None
        try:
            claims = get_verifier().verify(token)
        except InvalidToken as error:
            setattr(request, _ERROR, "invalid_token")
            raise exceptions.AuthenticationFailed(
                "Invalid bearer token.", code=error.code
            ) from None
        except KeysUnavailable as error:
            _log_unavailable(error)
            raise KeysUnavailableError(error) from None
        return _user_factory()(claims), claims

    def authenticate_header(self, request: Any) -> str:
        return challenge(getattr(request, _ERROR, None), _realm())
