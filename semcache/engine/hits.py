"""Hit bookkeeping: hit counts, recency and sliding expiry, kept in memory and written in batches.

A hit never waits on a disk write: ``HitBook.touch`` records it in memory, ``drain`` hands
the batch to the cache's background flusher, which rewrites the entries through the store
(logged, so other processes see the recency and evict by it too).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..storage.entry import Entry

__all__ = ["HitBook"]


@dataclass(slots=True)
class _Pending:
    count: int
    last: float
    expires_at: float | None


class HitBook:
    """Unflushed hits per entry id: how many, when last, and the (sliding) expiry they set."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pending)

    def touch(self, entry: Entry, now: float, *, extend_to: float | None = None) -> float | None:
        """Record a hit on ``entry`` at ``now``; ``extend_to`` moves its expiry (sliding TTL). Return the expiry."""
        with self._lock:
            pending = self._pending.get(entry.id)
            if pending is None:
                pending = self._pending[entry.id] = _Pending(0, now, entry.expires_at)
            pending.count += 1
            pending.last = now
            if extend_to is not None:
                pending.expires_at = extend_to
            return pending.expires_at

    def expiry(self, entry: Entry) -> Entry:
        """Return ``entry`` with this process's unflushed sliding expiry applied (else a hit before
        the next flush would see the stored, older expiry and miss)."""
        with self._lock:
            pending = self._pending.get(entry.id)
        if pending is None or pending.expires_at == entry.expires_at:
            return entry
        return entry.with_(expires_at=pending.expires_at)

    def drain(self) -> dict[int, _Pending]:
        """Take every pending hit (the caller writes them)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore(self, pending: dict[int, _Pending]) -> None:
        """Put back hits whose write failed, merged with those recorded since."""
        with self._lock:
            for entry_id, old in pending.items():
                new = self._pending.get(entry_id)
                if new is None:
                    self._pending[entry_id] = old
                else:
                    new.count += old.count
