"""What the store keeps: one ``Entry`` per cached prompt/response pair, and change-log records.

Pure data. An entry is persisted as one JSON document (``Entry.to_record`` / ``from_record``):
the vector as base64 float32, the response with a type tag. Nothing is pickled, so upgrading
openai or pydantic can never make a store unreadable: JSON values come back as they went in,
SDK response objects (pydantic models) are rebuilt from their JSON on the way out, and a
record that cannot be decoded raises ``CorruptRecord``, which the store counts, logs and
removes. ``response`` is decoded lazily, so an index rebuild never touches the answers.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from ..errors import StoreError

__all__ = ["Change", "CorruptRecord", "Entry", "decode_response", "encode_response"]

_MAX_DEPTH = 64  # deeper answers are refused, never half-stored


class CorruptRecord(StoreError):
    """A stored record cannot be decoded (damaged, or written for a type that no longer exists)."""


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is JSON that reads back equal: str-keyed dicts, lists, str, finite numbers, bools, None."""
    if depth > _MAX_DEPTH:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def encode_response(value: Any) -> dict:
    """Return ``value`` as a type-tagged JSON object; raise ``StoreError`` for a type that cannot round-trip."""
    if _plain(value):
        return {"type": "json", "value": value}
    cls = type(value)
    if hasattr(value, "model_dump") and hasattr(cls, "model_validate"):  # pydantic models: the openai SDK's types
        dumped = value.model_dump(mode="json")
        if _plain(dumped):
            return {"type": "model", "class": f"{cls.__module__}:{cls.__qualname__}", "value": dumped}
    raise StoreError(f"cannot store a response of type {cls.__module__}.{cls.__qualname__}: semcache stores JSON values "
                     "(dict, list, str, numbers, bool, None) and pydantic models such as the openai SDK's")


def decode_response(tagged: Mapping) -> Any:
    """Return the value ``encode_response`` tagged; raise ``CorruptRecord`` when it cannot be rebuilt."""
    try:
        kind = tagged["type"]
        if kind == "json":
            return tagged["value"]
        if kind == "model":
            module, _, qualname = tagged["class"].partition(":")
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            return cls.model_validate(tagged["value"])
    except Exception as exc:  # an import, attribute or validation error: the type changed since it was stored
        raise CorruptRecord(f"stored response cannot be rebuilt: {type(exc).__name__}: {exc}") from exc
    raise CorruptRecord(f"stored response has an unknown type tag {kind!r}")


@dataclass(frozen=True)
class Entry:
    """One cached prompt/response pair. ``expires_at`` None means it never expires.

    ``response`` is the answer as given to ``insert``; an entry read from a store holds it
    encoded (``payload``) and decodes it on first access (raising ``CorruptRecord``).
    """

    id: int
    partition: str
    exact_key: str
    query_text: str
    embedding: np.ndarray | None
    payload: dict = field(repr=False)  # the type-tagged response (``encode_response``)
    model: str = ""
    tenant: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: float = 0.0
    expires_at: float | None = None
    hits: int = 0
    last_hit_at: float | None = None
    rejected: tuple[str, ...] = field(default=())  # query texts feedback marked wrong for this entry
    size: int = 0  # bytes of the encoded response + query + vector, for the byte cap
    answer_group: int | None = None  # entries whose answers agree share it (matching.groups); None: its own

    @classmethod
    def create(cls, *, response: Any, **fields: Any) -> "Entry":
        """Build an entry for ``response`` (raises ``StoreError`` when it cannot be stored)."""
        payload = encode_response(response)
        entry = cls(payload=payload, **fields)
        entry.__dict__["response"] = response  # the caller's own object, not a rebuilt copy
        return entry

    @cached_property
    def response(self) -> Any:
        return decode_response(self.payload)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def payload_bytes(self) -> int:
        return len(json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode())

    def to_record(self) -> bytes:
        record = {k: getattr(self, k) for k in self.__dataclass_fields__}
        record["embedding"] = None if self.embedding is None else base64.b64encode(
            np.asarray(self.embedding, np.float32).tobytes()).decode()
        record["rejected"] = list(self.rejected)
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    @classmethod
    def from_record(cls, record: bytes | Mapping) -> "Entry":
        """Decode ``to_record`` output (or a legacy format-1 dict); raise ``CorruptRecord`` when damaged."""
        try:
            if isinstance(record, (bytes, bytearray, memoryview)):
                data = json.loads(bytes(record))
                raw = data.get("embedding")
                embedding = None if raw is None else np.frombuffer(base64.b64decode(raw), dtype=np.float32)
            else:  # format 1 (semcache <= 0.1): a pickled dict, the response as the object itself
                data = dict(record)
                raw = data.pop("embedding", None)
                embedding = None if raw is None else np.frombuffer(raw, dtype=np.float32)
                data["payload"] = encode_response(data.pop("response"))
            data["embedding"] = embedding
            data["rejected"] = tuple(data.get("rejected") or ())
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except CorruptRecord:
            raise
        except Exception as exc:  # JSON, base64, missing fields, a legacy object that no longer encodes
            raise CorruptRecord(f"stored entry cannot be decoded: {type(exc).__name__}: {exc}") from exc

    def with_(self, **changes) -> "Entry":
        entry = replace(self, **changes)
        if "response" in self.__dict__ and "payload" not in changes:
            entry.__dict__["response"] = self.__dict__["response"]
        return entry


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    op: str  # "put" | "del"
    entry_id: int
