"""Type stubs of the extension module (the Rust verifier)."""

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

__version__: str

def _runtime_pid() -> Optional[int]: ...

class ManualClock:
    def __new__(cls, start: Optional[float] = None) -> "ManualClock": ...
    def advance(self, seconds: float) -> None: ...
    def now(self) -> float: ...

class Verifier:
    def __new__(
        cls,
        jwks_url: Optional[str] = None,
        *,
        issuer: Union[str, Iterable[str]],
        audience: Union[str, Iterable[str], None] = None,
        any_audience: bool = False,
        redis_url: Optional[str] = None,
        redis_prefix: str = "jwkstash",
        hmac_secret: Union[str, bytes, None] = None,
        previous_hmac_secret: Union[str, bytes, None] = None,
        insecure_unauthenticated_redis: bool = False,
        allow_http_loopback: bool = False,
        algorithms: Optional[List[str]] = None,
        leeway: Optional[float] = None,
        max_token_bytes: Optional[int] = None,
        require_typ: Optional[str] = None,
        accept_future_iat: bool = False,
        max_token_lifetime: Optional[float] = None,
        lease_ttl: Optional[float] = None,
        verified_token_cache: Optional[Tuple[int, float]] = None,
        ttl: Optional[float] = None,
        min_ttl: Optional[float] = None,
        max_ttl: Optional[float] = None,
        refresh_ahead: Optional[float] = None,
        max_stale: Optional[float] = None,
        unknown_kid_cooldown: Optional[float] = None,
        unknown_kid_wait: Optional[float] = None,
        negative_ttl: Optional[float] = None,
        backoff_initial: Optional[float] = None,
        backoff_max: Optional[float] = None,
        min_refresh_interval: Optional[float] = None,
        fetch_timeout: Optional[float] = None,
        clock: Optional[ManualClock] = None,
    ) -> "Verifier": ...
    def verify(self, token: Union[str, bytes]) -> Dict[str, Any]: ...
    def prefetch(self) -> None: ...
    def refresh(self) -> Dict[str, Any]: ...
    def invalidate(self) -> None: ...
    def stats(self) -> Dict[str, Union[int, float]]: ...
    def health(self) -> Dict[str, Any]: ...
    def jwks(self) -> str: ...
    @property
    def issuers(self) -> List[str]: ...
    @property
    def _runtime_pid(self) -> int: ...
    def _signing_key_id(self, token: Union[str, bytes]) -> Tuple[int, int]: ...
    def _published_jwk(self, fingerprint: int, thumbprint: int) -> Optional[str]: ...
