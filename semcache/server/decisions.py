"""The recent decisions worth a person's look: every semantic (and stale) hit, and the misses that came close.

``Decisions.record(result, ...)`` keeps, in a bounded ring (the newest ``size``), each request
whose match policy compared it with a stored prompt and either served it or scored within
``band`` of the threshold (a near miss: with the default cosine policy at 0.90, a cosine of 0.85 up).
Exact hits are left out (the key decided, not a score), and so are queries longer than
``MAX_QUERY_CHARS`` (the ring stays small; feedback needs the whole text). The review page
(``review``) shows them with "right"/"wrong" buttons; ``judge`` notes the verdict that
``POST /semcache/feedback`` recorded, from the page or from anywhere else.

In memory, per process: a review queue, not a log (restart: empty). Nothing here touches the
store; the stored prompt of a miss's candidate is read when the page is rendered.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Decided", "Decisions"]

DEFAULT_SIZE = 200
DEFAULT_BAND = 0.05  # on the score's scale (the cosine): near misses are what a slightly lower threshold would serve
MAX_QUERY_CHARS = 16_384


@dataclass
class Decided:
    """One decision: what was asked, which entry it was compared with, the evidence, and any verdict."""

    seq: int
    at: float  # Unix seconds
    route: str
    tenant: str
    model: str
    query: str
    entry_id: int
    served: str  # "semantic" or "stale" (the entry answered), "refused" (a near miss: it went upstream)
    score: float
    similarity: float
    threshold: float
    reason: str
    checks: tuple[tuple[str, bool, str], ...]  # (name, passed, detail)
    stored: str | None = None  # the entry's prompt, when known at record time (hits)
    verdict: bool | None = field(default=None)  # True right, False wrong, None not judged


class Decisions:
    """A bounded, thread-safe ring of recent near-threshold decisions and semantic hits."""

    def __init__(self, size: int = DEFAULT_SIZE, *, band: float = DEFAULT_BAND, timer: Callable[[], float] = time.time) -> None:
        self.band = band
        self._ring: deque[Decided] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._timer = timer

    def __len__(self) -> int:
        return len(self._ring)

    def __repr__(self) -> str:
        return f"Decisions({len(self)}/{self._ring.maxlen}, band={self.band})"

    def record(self, result: Any, *, route: str, tenant: str, model: str) -> Decided | None:
        """Keep ``result`` (an engine ``Result``) when it is worth reviewing; return what was kept, else None."""
        decision, hit = result.decision, result.hit
        if decision is None or decision.entry_id is None or len(result.key.query_text) > MAX_QUERY_CHARS:
            return None
        if hit is not None and hit.kind == "exact":
            return None
        served = hit is not None and hit.entry.id == decision.entry_id
        if not served and decision.score < decision.threshold - self.band:
            return None
        kept = Decided(
            seq=next(self._seq), at=self._timer(), route=route, tenant=tenant, model=model, query=result.key.query_text,
            entry_id=decision.entry_id, served=hit.kind if served else "refused", score=float(decision.score),
            similarity=float(decision.similarity), threshold=float(decision.threshold), reason=decision.reason,
            checks=tuple((c.name, bool(c.passed), str(c.detail or "")) for c in decision.checks),
            stored=hit.entry.query_text if served else None)
        with self._lock:
            self._ring.append(kept)
        return kept

    def recent(self) -> list[Decided]:
        """Return the kept decisions, newest first."""
        with self._lock:
            return list(reversed(self._ring))

    def judge(self, entry_id: int, query: str | None, correct: bool) -> int:
        """Note a verdict on ``entry_id`` (for ``query``, or every query when None); return how many were marked."""
        marked = 0
        with self._lock:
            for kept in self._ring:
                if kept.entry_id == entry_id and (query is None or kept.query == query):
                    kept.verdict = correct
                    marked += 1
        return marked
