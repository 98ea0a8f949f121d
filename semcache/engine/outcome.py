"""One record of each request (``Result``) and the one place it becomes counters (``tally``).

The engine never counts along the way: every path through ``lookup``/``complete`` ends in a
``Result`` (status, the hit with its entry and decision, what failed and was failed open),
and ``tally`` turns it into the stats counters. The upstream client counts its own calls
(attempts, retries, waits, tokens spent) in ``upstream.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..keys import RequestKey
from ..matching.policy import Decision
from ..stats import Stats
from ..storage.entry import Entry
from ..upstream.pricing import Pricing

__all__ = ["Hit", "Result", "tally"]


@dataclass(frozen=True)
class Hit:
    """A cached answer: ``kind`` is "exact", "semantic" or "stale"."""

    entry: Entry
    kind: str
    decision: Decision | None = None

    @property
    def response(self) -> Any:
        return self.entry.response

    @property
    def similarity(self) -> float:
        return 1.0 if self.decision is None else self.decision.similarity


@dataclass(frozen=True)
class Result:
    """What one request did.

    ``status``: "hit", "miss", "bypass" (the caller skipped the lookup) or "stale" (upstream
    failed and an expired or near answer was served). ``hit`` is the served entry (hits and
    stale answers); ``entry_id`` the entry served or stored; ``decision`` the policy's evidence.
    ``lookup_error`` / ``store_error`` name a failure that was failed open (the request still got
    its answer); ``lookup_bug`` marks a lookup failure that is a programming error, not the
    environment. ``shared``: the answer came from another request's upstream call (singleflight).
    """

    response: Any
    status: str
    key: RequestKey
    hit: Hit | None = None
    entry_id: int | None = None
    decision: Decision | None = None
    lookup_error: str | None = None
    lookup_bug: bool = False
    store_error: str | None = None
    shared: bool = False


def tally(stats: Stats, result: Result, pricing: Pricing) -> None:
    """Count one request's result: requests, its tier or miss, what it saved, what failed open."""
    t, m = result.key.tenant, result.key.model

    def incr(counter: str, amount: float = 1) -> None:
        stats.incr(counter, amount, tenant=t, model=m)

    incr("requests")
    if result.status == "bypass":
        incr("bypasses")
    elif result.status == "hit":
        incr("exact_hits" if result.hit.kind == "exact" else "semantic_hits")
    else:  # a miss, or a miss that upstream failed and a stale answer served
        incr("misses")
        if result.status == "stale":
            incr("stale_serves")
    if result.hit is not None:
        entry = result.hit.entry
        incr("requests_saved")
        incr("prompt_tokens_saved", entry.prompt_tokens)
        incr("completion_tokens_saved", entry.completion_tokens)
        incr("cost_saved_usd", pricing.cost(entry.model or m, entry.prompt_tokens, entry.completion_tokens))
    if result.lookup_error is not None:
        incr("lookup_bugs" if result.lookup_bug else "lookup_errors")
        incr(f"errors.{result.lookup_error}")
    if result.store_error is not None and not result.shared:
        incr(f"errors.{result.store_error}")
