"""What the store keeps: one ``Entry`` per cached prompt/response pair, and change-log records.

Pure data. ``Entry.to_record``/``from_record`` turn an entry into the plain dict a store
persists (the vector as float32 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

__all__ = ["Change", "Entry"]


@dataclass(frozen=True)
class Entry:
    """One cached prompt/response pair. ``expires_at`` None means it never expires."""

    id: int
    partition: str
    exact_key: str
    query_text: str
    embedding: np.ndarray | None
    response: Any
    model: str = ""
    tenant: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: float = 0.0
    expires_at: float | None = None
    hits: int = 0
    last_hit_at: float | None = None
    rejected: tuple[str, ...] = field(default=())  # query texts feedback marked wrong for this entry
    size: int = 0  # bytes of the pickled response + query + vector, for the byte cap

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_record(self) -> dict:
        record = {k: getattr(self, k) for k in self.__dataclass_fields__}
        record["embedding"] = None if self.embedding is None else np.asarray(self.embedding, np.float32).tobytes()
        record["rejected"] = list(self.rejected)
        return record

    @classmethod
    def from_record(cls, record: Mapping) -> "Entry":
        data = dict(record)
        raw = data.get("embedding")
        data["embedding"] = None if raw is None else np.frombuffer(raw, dtype=np.float32)
        data["rejected"] = tuple(data.get("rejected") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def with_(self, **changes) -> "Entry":
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    op: str  # "put" | "del"
    entry_id: int
