"""Fixtures: the identity provider, the redis-server, a prefix per test.

Without `redis-server` on PATH the Redis tests fail with how to install it, unless
JWKSTASH_SKIP_REDIS is set: then they are skipped and the summary says how many.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any, Iterator, List, Optional

import pytest

from support import REDIS_SERVER, SKIP_ENV, Provider, RedisServer, signing_key

_skipped_redis: List[str] = []


@pytest.fixture
def provider() -> Iterator[Provider]:
    idp = Provider([signing_key("key-1")])
    yield idp
    idp.close()


@pytest.fixture(scope="session")
def _redis_server() -> Iterator[Optional[RedisServer]]:
    if shutil.which(REDIS_SERVER) is None:
        yield None
        return
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis(_redis_server: Optional[RedisServer], request: pytest.FixtureRequest) -> RedisServer:
    """The session's redis-server; each test uses its own key prefix (see ``prefix``)."""
    if _redis_server is None:
        if not os.environ.get(SKIP_ENV):
            pytest.fail(
                f"{REDIS_SERVER} is not on PATH: install it (Debian/Ubuntu: apt-get install "
                f"redis-server), or set {SKIP_ENV}=1 to skip the tests that need it",
                pytrace=False,
            )
        _skipped_redis.append(request.node.nodeid)
        pytest.skip(f"{SKIP_ENV} is set and {REDIS_SERVER} is not on PATH")
    return _redis_server


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test's own: tests share one server, never an entry."""
    return f"pytest-{uuid.uuid4().hex[:12]}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped_redis:
        terminalreporter.write_line(
            f"*** SKIPPED ({SKIP_ENV} is set): {REDIS_SERVER} is not on PATH; "
            f"{len(_skipped_redis)} Redis test(s) skipped ***",
            yellow=True,
        )
