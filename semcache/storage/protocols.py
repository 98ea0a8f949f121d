"""The store seams: what the engine needs of a store.

``DiskStore`` (``disk.py``) implements them over one diskcache directory.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from .entry import Change, Entry

__all__ = ["Store"]


class Store(Protocol):
    """Persist entries and the change log; several processes may share one."""

    def get(self, entry_id: int) -> Entry | None: ...

    def put(self, entry: Entry) -> int: ...

    def delete(self, entry_ids: Iterable[int]) -> int: ...

    def scan(self) -> Iterator[Entry]: ...

    def changes_since(self, seq: int) -> tuple[int, list[Change] | None]: ...
