"""Per-call cost of verifying a JWT in Python, jwkstash beside PyJWT's ways, on a warm cache.

Run by bench/run.sh (a release build of the extension in its own venv). Every candidate
verifies the same token against the same identity provider on 127.0.0.1 (the one the tests
use), with issuer, audience and expiry checked:

- ``jwkstash.verify``: ``Verifier.verify(token)``, the Rust verification (GIL released).
- ``jwkstash key + jwt.decode``: the drop-in path, ``get_signing_key_from_jwt`` then PyJWT.
- ``PyJWKClient + jwt.decode``: PyJWT's client with its defaults (the parsed set cached in
  process for 300 s), then PyJWT.
- ``seed: get_or_set + jwt.decode``: the seed's ``PyJWKClient`` subclass whose ``fetch_data``
  is ``cache.get_or_set(...)`` in Django's cache (here the in-process locmem backend: no
  network, so a lower bound of the Redis original), with the client's own set cache off as in
  the PyJWT versions the post used: every call reads the cache and parses the set again.
- ``floor: jwt.decode, key parsed once``: PyJWT alone with a pre-parsed key; no lookup at all.

Each candidate runs ``--calls`` verifications per round, ``--rounds`` rounds; the table gives
the median round's time per call. "2 threads" runs the same number of calls split over two
threads at once: the wall time per call, and the speed-up over one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import django  # noqa: E402
import jwt  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
django.setup()
from django.core.cache import cache  # noqa: E402

import jwkstash  # noqa: E402
from support import AUDIENCE, Provider, signing_key  # noqa: E402


class SeedJWKClient(jwt.PyJWKClient):
    """The seed's client: the raw JWKS cached for a day with ``cache.get_or_set``."""

    def fetch_data(self):
        return cache.get_or_set("MY_APP_NAME_JWKS", super().fetch_data, timeout=24 * 3600)


def candidates(provider: Provider, alg: str, token: str) -> Dict[str, Callable[[], object]]:
    verifier = jwkstash.Verifier(**provider.verifier_settings())
    client = jwt.PyJWKClient(provider.url)
    seed = SeedJWKClient(provider.url, cache_jwk_set=False)
    cache.clear()
    floor_key = jwt.PyJWK(provider.keys[0].jwk).key
    options = dict(algorithms=[alg], audience=AUDIENCE, issuer=provider.issuer)

    def with_pyjwt(source) -> Callable[[], object]:
        return lambda: jwt.decode(token, source.get_signing_key_from_jwt(token).key, **options)

    found = {
        "jwkstash.verify": lambda: verifier.verify(token),
        "jwkstash key + jwt.decode": with_pyjwt(verifier),
        "PyJWKClient + jwt.decode": with_pyjwt(client),
        "seed: get_or_set + jwt.decode": with_pyjwt(seed),
        "floor: jwt.decode, key parsed once": lambda: jwt.decode(token, floor_key, **options),
    }
    for run in found.values():  # warm every cache, and check that each one verifies
        claims = run()
        assert claims["sub"] == "user-1", claims
    return found


def per_call(run: Callable[[], object], calls: int, threads: int) -> float:
    """Seconds per call: wall time of ``calls`` calls split over ``threads`` threads."""
    share = calls // threads
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for _ in range(share):
            run()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - began) / (share * threads)


def measure(run: Callable[[], object], calls: int, rounds: int) -> Tuple[float, float]:
    one, two = [], []
    for _ in range(rounds):  # interleaved, so that drift hits both alike
        one.append(per_call(run, calls, 1))
        two.append(per_call(run, calls, 2))
    return statistics.median(one), statistics.median(two)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    rows: List[str] = []
    load_before = os.getloadavg()
    for alg in ("RS256", "ES256"):
        provider = Provider([signing_key(f"bench-{alg}", alg)])
        try:
            token = provider.mint()
            for name, run in candidates(provider, alg, token).items():
                one, two = measure(run, args.calls, args.rounds)
                rows.append(
                    f"| {alg} | {name} | {one * 1e6:.1f} µs | {two * 1e6:.1f} µs | {one / two:.2f}× |"
                )
                print(rows[-1], flush=True)
            fetches = provider.requests
        finally:
            provider.close()
        # jwkstash and PyJWKClient fetch once each, the seed's client once (then its cache).
        print(f"({alg}: the provider was asked {fetches} times in all)", flush=True)

    load_after = os.getloadavg()
    print()
    print(
        f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(
        f"Python {platform.python_version()}, PyJWT {jwt.__version__}, "
        f"jwkstash {jwkstash.__version__}, {os.cpu_count()} cores, "
        f"{args.calls} calls x {args.rounds} rounds, median round"
    )
    print()
    print("| alg | candidate | 1 thread, per call | 2 threads, wall per call | 2-thread speed-up |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
