"""`fork()` as gunicorn --preload does it: a verifier built (and used) in the parent works in
each forked child, which starts its own runtime and connections and never touches the
parent's; the parent keeps working."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from typing import Any, Callable, Dict

import pytest

import jwkstash
from jwkstash import _jwkstash
from support import HMAC_SECRET, Provider

CHILD_TIMEOUT = 30.0


def in_child(work: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Runs ``work`` in a forked child (real ``os.fork()``) and returns what it returned; fails
    if the child hangs (a deadlock) or dies."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        status = 0
        try:
            os.close(read)
            report = work()
        except BaseException as error:  # reported to the parent
            report = {"error": f"{type(error).__name__}: {error}"}
            status = 1
        try:
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(status)
    os.close(write)
    chunks = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            pytest.fail(f"the forked child hung for {CHILD_TIMEOUT} s")
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks) or b"{}")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    return report


def child_verifies(
    verifier: jwkstash.Verifier, token: str, count: int = 1
) -> Callable[[], Dict[str, Any]]:
    def work() -> Dict[str, Any]:
        held_before = _jwkstash._runtime_pid()
        for _ in range(count):
            claims = verifier.verify(token)
        return {
            "pid": os.getpid(),
            "held_before": held_before,
            "runtime_pid": _jwkstash._runtime_pid(),
            "verifier_runtime_pid": verifier._runtime_pid,
            "sub": claims["sub"],
            "stats": verifier.stats(),
        }

    return work


def test_forked_child_starts_its_own_runtime(provider: Provider) -> None:
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    token = provider.mint()
    assert verifier.verify(token)["sub"] == "user-1"
    parent = os.getpid()
    assert verifier._runtime_pid == parent

    child = in_child(child_verifies(verifier, token, count=50))
    assert child["sub"] == "user-1"
    assert child["held_before"] == parent  # the child found its parent's runtime...
    assert child["runtime_pid"] == child["pid"] != parent  # ...and started its own
    assert child["verifier_runtime_pid"] == child["pid"]
    # Its own verifier (counters from zero) fetched over its own connection: without a shared
    # tier every process fetches once, as any per-process cache does.
    assert child["stats"]["verified"] == 50 and child["stats"]["fetches"] == 1
    assert provider.requests == 2

    # The parent is untouched and keeps working on its own runtime and set.
    assert verifier._runtime_pid == parent
    assert verifier.verify(token)["sub"] == "user-1"
    assert verifier.stats()["fetches"] == 1
    assert provider.requests == 2


def test_forked_children_share_the_parents_fleet_entry(
    provider: Provider, redis, prefix: str
) -> None:
    """gunicorn --preload with Redis: the master builds the verifier (and may use it), each
    worker connects to Redis itself and reads the entry instead of asking the provider."""
    verifier = jwkstash.Verifier(
        **provider.verifier_settings(
            redis_url=redis.url, redis_prefix=prefix, hmac_secret=HMAC_SECRET
        )
    )
    token = provider.mint()
    verifier.prefetch()
    assert provider.requests == 1
    for _ in range(3):
        child = in_child(child_verifies(verifier, token, count=20))
        assert child["runtime_pid"] == child["pid"]
        assert child["stats"]["fetches"] == 0
        assert child["stats"]["shared_hits"] >= 1
    assert provider.requests == 1
    assert verifier.verify(token)["sub"] == "user-1"


def test_built_but_unused_in_the_parent(provider: Provider, redis, prefix: str) -> None:
    """The usual --preload case: built at import in the master, first used in the workers."""
    verifier = jwkstash.Verifier(
        **provider.verifier_settings(
            redis_url=redis.url, redis_prefix=prefix, hmac_secret=HMAC_SECRET
        )
    )
    token = provider.mint()
    reports = [in_child(child_verifies(verifier, token, count=10)) for _ in range(2)]
    assert [report["sub"] for report in reports] == ["user-1", "user-1"]
    assert sum(report["stats"]["fetches"] for report in reports) == 1
    assert provider.requests == 1


def test_fork_while_threads_verify(provider: Provider) -> None:
    """Forks while two parent threads verify without the GIL: no child deadlocks on what those
    threads held, and the parent's threads never fail."""
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    token = provider.mint()
    verifier.prefetch()
    stop = threading.Event()
    failures: list = []
    counts = [0, 0]

    def hammer(slot: int) -> None:
        while not stop.is_set():
            try:
                verifier.verify(token)
                counts[slot] += 1
            except Exception as error:  # reported below
                failures.append(error)

    threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(8):
            child = in_child(child_verifies(verifier, token, count=20))
            assert child["sub"] == "user-1" and child["runtime_pid"] == child["pid"]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert min(counts) > 0
