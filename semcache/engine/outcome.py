"""One record of each request (``Result``) and the one place it becomes counters (``tally``).

The engine never counts along the way: every path through ``lookup``/``complete`` ends in a
``Result`` (status, the hit with its entry and decision, what failed and was failed open),
and ``tally`` turns it into the stats counters. The upstream client counts its own calls
(attempts, retries, waits, tokens spent) in ``upstream.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import SemcacheError
from ..keys import RequestKey
from ..matching.policy import Decision
from ..stats import Stats
from ..storage.entry import Entry
from ..upstream.pricing import Pricing
from ..upstream.tokens import usage_of

__all__ = ["ENVIRONMENTAL", "Hit", "Looked", "Result", "tally"]

# Failures of the environment a lookup fails open on quietly (a warning): the store, the model,
# the disk. Anything else is a bug, failed open too but logged at error level.
ENVIRONMENTAL = (SemcacheError, OSError, MemoryError)


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

    ``status``: "hit", "miss" (this request's own upstream call), "follower" (a miss that joined an
    identical request's upstream call already in flight, and got its answer: no call of its own),
    "bypass" (the caller skipped the lookup) or "stale" (upstream
    failed and an expired answer to the same question was served: the expired copy of the same
    request, or an expired entry that passes the hit rule itself; never a near miss). ``hit`` is the served entry (hits and
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
    elif result.status == "follower":  # one upstream call answered it and its leader: saved, not a miss
        incr("coalesced")
        prompt, completion = usage_of(result.response)
        incr("requests_saved")
        incr("prompt_tokens_saved", prompt)
        incr("completion_tokens_saved", completion)
        incr("cost_saved_usd", pricing.cost(m, prompt, completion))
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
        if not pricing.priced(entry.model or m):  # shown as unpriced, never as $0 (stats.snapshot)
            incr("unpriced_requests_saved")
    if result.lookup_error is not None:
        incr("lookup_bugs" if result.lookup_bug else "lookup_errors")
        incr(f"errors.{result.lookup_error}")
    if result.store_error is not None and not result.shared:
        incr(f"errors.{result.store_error}")


Stale = Callable[[], "Hit | None"]  # finds the stale-if-error answer, when it is needed


class Looked:
    """What a lookup found: a fresh hit, else a stale fallback and the policy's decision (or the error)."""

    __slots__ = ("key", "hit", "stale", "decision", "error", "bug")

    def __init__(self, key: RequestKey, *, hit: Hit | None = None, stale: Stale | None = None,
                 decision: Decision | None = None, error: str | None = None, bug: bool = False) -> None:
        self.key, self.hit, self.stale, self.decision, self.error, self.bug = key, hit, stale, decision, error, bug

    def result(self, response: Any) -> Result:
        """The lookup's own result: the hit, or a miss carrying the decision and any failure."""
        if self.hit is not None:
            return Result(self.hit.response, "hit", self.key, self.hit, self.hit.entry.id, self.hit.decision)
        return Result(response, "miss", self.key, decision=self.decision, lookup_error=self.error, lookup_bug=self.bug)

    def stale_result(self, stale: Hit) -> Result:
        """Upstream failed after this miss: the stale answer served instead."""
        return Result(stale.response, "stale", self.key, stale, stale.entry.id, stale.decision, self.error, self.bug)

    def merge(self, answer: Result, shared: bool) -> Result:
        """A miss path's answer, with this lookup's failure (if any) and whether it was shared (a
        shared miss is a "follower" of another request's call, counted as ``coalesced``)."""
        status = "follower" if shared and answer.status == "miss" else answer.status
        return Result(answer.response, status, answer.key, answer.hit, answer.entry_id, answer.decision,
                      self.error, self.bug, answer.store_error, shared)
