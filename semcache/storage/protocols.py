"""The store seams: the four things the engine and the upstream need of a store.

- ``EntryStore``: the entries themselves, each write atomic (an entry is visible only when
  complete) and logged.
- ``ChangeLog``: the sequence of those writes, so every process keeps its index in step.
- ``CounterStore``: the stats counters, added to by every process.
- ``Ledger``: budget spending, reserved atomically before a call and settled after it.
- ``Leases``: short named leases, so that identical misses in different processes make one
  upstream call (singleflight across processes and replicas).

``Store`` is all five: ``DiskStore`` (one diskcache directory) implements it, and a second
store (Redis) implements the same four without touching the engine. Each seam has a contract
suite in ``tests/contracts.py`` that every implementation runs.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Protocol

from .entry import Change, Entry

__all__ = ["ChangeLog", "CounterStore", "EntryStore", "Leases", "Ledger", "Store", "Tallies"]

CounterKey = tuple[str, str, str]  # (tenant, model, counter)


class EntryStore(Protocol):
    """Persist entries; several processes may share one store."""

    def bind(self, model_id: str, dim: int) -> None:
        """Record the embedding model of a new (or empty) store; raise ``ConfigError`` for another."""

    def next_id(self) -> int:
        """Return a new entry id, unique across every process of the store."""

    def get(self, entry_id: int) -> Entry | None:
        """Return the entry, or None when absent (or undecodable: then it is counted and removed)."""

    def put(self, entry: Entry) -> int:
        """Store an entry, replacing any entry of the same exact key; return its change seq."""

    def update(self, entries: Iterable[Entry]) -> None:
        """Rewrite existing entries (hits, recency, expiry, feedback), logged; skip deleted ones."""

    def delete(self, entry_ids: Iterable[int]) -> int:
        """Delete entries (logged); return how many existed."""

    def scan(self) -> Iterator[Entry]:
        """Yield every entry, its ``response`` left encoded (an index rebuild never decodes answers)."""

    def count(self) -> int:
        """Return the number of entries."""

    def close(self) -> None: ...


class ChangeLog(Protocol):
    """The log of entry writes, read by every process to keep its index in step."""

    def head(self) -> int:
        """Return the newest change seq: one cheap read, done before every lookup."""

    def changes_since(self, seq: int) -> tuple[int, list[Change] | None]:
        """Return (head, changes after ``seq``), or (head, None) when the log no longer reaches back."""


class CounterStore(Protocol):
    """Stats counters keyed by (tenant, model, counter), summed over every process."""

    def add_counters(self, deltas: Mapping[CounterKey, float]) -> None:
        """Add every delta in one atomic write."""

    def counters(self) -> dict[CounterKey, float]: ...

    def reset_counters(self) -> None: ...


class Ledger(Protocol):
    """Integer totals (budget spending in tokens or micro-dollars) shared by every process."""

    def add_total(self, key: str, amount: int) -> int:
        """Add ``amount`` (may be negative) to the total ``key`` atomically; return the new total."""

    def reserve_total(self, key: str, amount: int, limit: int) -> int | None:
        """Add ``amount`` only if the total stays at or under ``limit``; return the new total, or None (refused)."""

    def total(self, key: str) -> int: ...


class Leases(Protocol):
    """Named leases that expire on their own: at most one holder at a time, across every process."""

    def acquire_lease(self, name: str, ttl: float) -> str | None:
        """Take the lease ``name`` for ``ttl`` seconds if nobody holds it; return its token, else None."""

    def release_lease(self, name: str, token: str) -> None:
        """Give the lease back, only if ``token`` still holds it (an expired lease may have a new holder)."""


class Tallies(Protocol):
    """Small named integer histograms per scope, summed over every process (the learning layer's
    evidence: ``matching.calibration``). Optional: a store without them learns in memory only."""

    def add_tallies(self, scope: str, deltas: Mapping[str, int]) -> None:
        """Add every delta of one scope in one atomic write."""

    def tallies(self, scope: str) -> dict[str, int]: ...


class Store(EntryStore, ChangeLog, CounterStore, Ledger, Leases, Protocol):
    """Everything the engine needs of a store: entries, their change log, counters, a ledger, leases."""
