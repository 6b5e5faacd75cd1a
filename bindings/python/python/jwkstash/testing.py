"""Helpers for the tests of code that uses jwkstash.

:class:`ManualClock` moves only when told: give it to a :class:`jwkstash.Verifier`
(``clock=...``, or ``"CLOCK"`` in Django's ``JWKSTASH`` settings) to test TTLs, backoff and
``max_stale`` without sleeping. The verifier reads it for every freshness and expiry decision,
the tokens' ``exp`` and ``nbf`` included.
"""

from ._jwkstash import ManualClock

__all__ = ["ManualClock"]
