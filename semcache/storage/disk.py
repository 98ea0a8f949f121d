"""Keep entries on disk: the four store seams over one diskcache directory, change log included.

The store is the source of truth; every index is derived from it. Each write is one SQLite
transaction that stores the entry, its exact-key pointer and a change-log record (a monotonic
sequence number), so an entry is visible only when complete, a crash loses at most the entry
being written, and every process sharing the directory can replay what others wrote.

Keys inside the diskcache directory::

    meta             {"format", "model_id", "dim"}  what the directory was built with
    seq              head of the change log
    ids              last entry id handed out
    e:<id>           an entry: one JSON document (Entry.to_record); format 1 kept a pickled dict
    x:<exact_key>    id of the entry stored for that exact key
    l:<seq>          change record (op, id)   op: "put" | "del"
    s:<tenant>|<model>|<counter>   persisted stats counter
    t:<key>          a ledger total (budget spending: integer tokens or micro-dollars)
    v:<scope>        tallies of one scope (answer-aware learning's evidence): {name: int}
    lease:<name>     a lease's token, expiring with the lease (diskcache's own expiry)

A record that cannot be decoded (damaged on disk, or a format-1 pickle of a class an upgrade
removed) is never fatal: reading it counts ``corrupt_records``, logs once, and removes it, so
the cache still opens and the request is a miss. ``semcache doctor`` reports the rest.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from typing import Iterable, Iterator, Mapping

import diskcache

from ..errors import ConfigError, StoreError
from .entry import Change, CorruptRecord, Entry

__all__ = ["DiskStore"]

log = logging.getLogger("semcache")

FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1's pickled records are read, and rewritten as JSON when touched
LOG_KEEP = 100_000  # change records kept; a process further behind rebuilds its index
_SEP = "\x1f"
CORRUPT = ("", "", "corrupt_records")


class DiskStore:
    """A ``Store`` in a diskcache directory (SQLite + files), safe for several processes."""

    def __init__(self, directory: str, *, timeout: float = 60.0, log_keep: int = LOG_KEEP) -> None:
        self.directory = str(directory)
        self.log_keep = log_keep
        try:
            # eviction_policy "none": diskcache would otherwise write on every read (access time)
            # and cull entries behind our back; semcache evicts itself, vector and log included.
            self._cache = diskcache.Cache(self.directory, timeout=timeout, eviction_policy="none",
                                          size_limit=2**62, cull_limit=0, statistics=False)
            self._cache.get("meta")
        except (sqlite3.DatabaseError, OSError) as exc:
            raise ConfigError(f"cache directory {self.directory!r} is not a usable semcache store: {exc}") from exc
        self._lock = threading.Lock()
        self._warned_corrupt = False

    def __repr__(self) -> str:
        return f"DiskStore({self.directory!r})"

    def close(self) -> None:
        self._cache.close()

    # -- what the directory was built with -------------------------------------------------

    def bind(self, model_id: str, dim: int) -> None:
        """Record the embedding model of a new (or empty) directory; refuse one whose entries used another."""
        expected = {"format": FORMAT, "model_id": model_id, "dim": int(dim)}
        with self._translate("bind"):
            meta = self._cache.get("meta")
            if meta is None:
                self._cache.add("meta", expected)
                meta = self._cache.get("meta")
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            raise ConfigError(f"cache directory {self.directory!r} has an unknown format {meta!r}; use a new directory")
        if (meta["model_id"], meta["dim"]) != (model_id, int(dim)) and self._keys("e:"):
            raise ConfigError(
                f"cache directory {self.directory!r} was built with model {meta['model_id']!r} "
                f"(dim {meta['dim']}), not {model_id!r} (dim {dim}); use another directory or clear it"
            )
        if meta != expected:  # an empty directory rebinds freely; format 1 -> 2 (its records stay readable)
            with self._translate("bind"):
                self._cache.set("meta", expected)

    def meta(self) -> dict | None:
        return self._cache.get("meta")

    # -- ledger: totals that processes add to (budget spending) ----------------------------

    def add_total(self, key: str, amount: int) -> int:
        """Add ``amount`` to the total ``key`` atomically (every process sees it); return the new total."""
        with self._translate("add to a total"):
            return int(self._cache.incr(f"t:{key}", int(amount), default=0))

    def reserve_total(self, key: str, amount: int, limit: int) -> int | None:
        """Add ``amount`` only if the total stays at or under ``limit``; return the new total, or None."""
        with self._translate("reserve from a total"), self._cache.transact():
            total = int(self._cache.get(f"t:{key}", 0)) + int(amount)
            if total > limit:
                return None
            self._cache.set(f"t:{key}", total)
            return total

    def total(self, key: str) -> int:
        with self._translate("read a total"):
            return int(self._cache.get(f"t:{key}", 0))

    # -- tallies: small named integer histograms (the learning layer's evidence) -----------

    def add_tallies(self, scope: str, deltas: Mapping[str, int]) -> None:
        """Add each delta to the tally ``name`` of ``scope``, all in one transaction."""
        if not deltas:
            return
        with self._translate("add tallies"), self._cache.transact():
            current = dict(self._cache.get(f"v:{scope}", {}))
            for name, amount in deltas.items():
                current[name] = int(current.get(name, 0)) + int(amount)
            self._cache.set(f"v:{scope}", current)

    def tallies(self, scope: str) -> dict[str, int]:
        with self._translate("read tallies"):
            return dict(self._cache.get(f"v:{scope}", {}))

    # -- leases: one process at a time calls upstream for an exact key ---------------------

    def acquire_lease(self, name: str, ttl: float) -> str | None:
        """Take the lease ``name`` for ``ttl`` seconds if it is free (diskcache's ``add`` is atomic)."""
        token = uuid.uuid4().hex
        with self._translate("take a lease"):
            return token if self._cache.add(f"lease:{name}", token, expire=ttl) else None

    def release_lease(self, name: str, token: str) -> None:
        with self._translate("release a lease"), self._cache.transact():
            if self._cache.get(f"lease:{name}") == token:
                self._cache.delete(f"lease:{name}")

    # -- entries ---------------------------------------------------------------------------

    def next_id(self) -> int:
        with self._translate("allocate an id"):
            return int(self._cache.incr("ids"))

    def get(self, entry_id: int) -> Entry | None:
        return self._read(f"e:{entry_id}")

    def _read(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``; a record that cannot be decoded is removed (None)."""
        try:
            with self._translate("read"):
                record = self._cache.get(key)
            return None if record is None else Entry.from_record(record)
        except StoreError as exc:
            if not isinstance(exc, CorruptRecord):
                raise
            failure: Exception = exc
        except Exception as exc:  # unpickling a format-1 record: ModuleNotFoundError, AttributeError, ...
            failure = exc
        self._drop_corrupt(key, failure)
        return None

    def _drop_corrupt(self, key: str, failure: Exception) -> None:
        entry_id = int(key[2:])
        if not self._warned_corrupt:
            self._warned_corrupt = True
            log.warning("semcache: removed undecodable entry %s from %s (%s: %s); later ones are counted in "
                        "'corrupt_records' (semcache doctor reports them)", entry_id, self.directory, type(failure).__name__, failure)
        with self._translate("remove a corrupt record"), self._cache.transact():
            if self._cache.delete(key):
                self._log("del", entry_id)
                self._add_counter(CORRUPT, 1)

    def get_exact(self, exact_key: str) -> Entry | None:
        with self._translate("read"):
            entry_id = self._cache.get(f"x:{exact_key}")
        return None if entry_id is None else self.get(entry_id)

    def put(self, entry: Entry) -> int:
        """Store an entry (replacing any entry of the same exact key); return its change seq."""
        record = entry.to_record()
        with self._translate("write"), self._cache.transact():
            previous = self._cache.get(f"x:{entry.exact_key}")
            if previous is not None and previous != entry.id:
                self._delete_one(previous, entry.exact_key)
            self._cache.set(f"e:{entry.id}", record)
            self._cache.set(f"x:{entry.exact_key}", entry.id)
            return self._log("put", entry.id)

    def update(self, entries: Iterable[Entry]) -> None:
        """Rewrite existing entries (hit counts, recency, sliding expiry, feedback), each logged so
        that other processes see them; skip entries deleted meanwhile."""
        with self._translate("write"), self._cache.transact():
            for entry in entries:
                if f"e:{entry.id}" in self._cache:
                    self._cache.set(f"e:{entry.id}", entry.to_record())
                    self._log("put", entry.id)

    def delete(self, entry_ids: Iterable[int]) -> int:
        with self._translate("delete"), self._cache.transact():
            return sum(self._delete_one(i) for i in entry_ids)

    def _delete_one(self, entry_id: int, exact_key: str | None = None) -> int:
        """Delete one entry and its exact-key pointer; never decodes the record's answer."""
        key = f"e:{entry_id}"
        if key not in self._cache:
            return 0
        if exact_key is None:
            try:
                exact_key = Entry.from_record(self._cache.get(key)).exact_key
            except Exception:  # a corrupt record: its pointer, if any, is left for doctor to find
                exact_key = None
        self._cache.delete(key)
        if exact_key is not None and self._cache.get(f"x:{exact_key}") == entry_id:
            self._cache.delete(f"x:{exact_key}")
        self._log("del", entry_id)
        return 1

    def scan(self) -> Iterator[Entry]:
        """Yield every entry (in no particular order); undecodable records are removed, not yielded."""
        with self._translate("scan"):
            keys = self._keys("e:")
        for key in keys:
            entry = self._read(key)
            if entry is not None:
                yield entry

    def count(self) -> int:
        return len(self._keys("e:"))

    __len__ = count

    def clear(self) -> None:
        """Delete every entry (logged, so other processes drop their vectors too)."""
        ids = [int(k[2:]) for k in self._keys("e:")]
        self.delete(ids)

    def volume(self) -> int:
        """Return the bytes the directory takes on disk."""
        return int(self._cache.volume())

    def exact_pointers(self) -> dict[str, int]:
        """Return every exact key -> entry id pointer (for ``semcache doctor``)."""
        with self._translate("scan"):
            return {key[2:]: self._cache.get(key) for key in self._keys("x:")}

    def drop_pointers(self, exact_keys: Iterable[str]) -> int:
        """Delete exact-key pointers (``semcache doctor --repair``); return how many existed."""
        with self._translate("delete"), self._cache.transact():
            return sum(bool(self._cache.delete(f"x:{key}")) for key in exact_keys)

    def _keys(self, prefix: str) -> list[str]:
        """Return the keys starting with ``prefix``, in one indexed range query.

        diskcache has no prefix lookup, and ``iterkeys`` walks every key (entries, pointers and
        log records alike): 2.4 s of a 4.3 s rebuild at 30k entries. Its key column is indexed,
        so a range scan through its connection (``_sql``, stable across diskcache 5.x) is one
        query. String keys are stored raw.
        """
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self._translate("scan"):
            rows = self._cache._sql("SELECT key FROM Cache WHERE key >= ? AND key < ? AND raw = 1", (prefix, upper)).fetchall()
        return [key for (key,) in rows]

    # -- change log ------------------------------------------------------------------------

    def _log(self, op: str, entry_id: int) -> int:
        seq = int(self._cache.incr("seq"))
        self._cache.set(f"l:{seq}", (op, entry_id))
        if seq % 1024 == 0 and seq > self.log_keep:
            for old in range(max(1, seq - self.log_keep - 1024), seq - self.log_keep):
                self._cache.delete(f"l:{old}")
        return seq

    def head(self) -> int:
        """Return the newest change seq: one cheap read, done before every lookup."""
        with self._translate("read"):
            return int(self._cache.get("seq", 0))

    def changes_since(self, seq: int) -> tuple[int, list[Change] | None]:
        """Return (head, changes after ``seq``), or (head, None) when the log no longer reaches back."""
        head = self.head()
        if head <= seq:
            return head, []
        changes = []
        with self._translate("read"):
            for s in range(seq + 1, head + 1):
                record = self._cache.get(f"l:{s}")
                if record is None:
                    return head, None
                changes.append(Change(s, record[0], int(record[1])))
        return head, changes

    # -- stats counters --------------------------------------------------------------------

    def add_counters(self, deltas: Mapping[tuple[str, str, str], float]) -> None:
        with self._translate("write"), self._cache.transact():
            for key, value in deltas.items():
                self._add_counter(key, value)

    def _add_counter(self, key: tuple[str, str, str], value: float) -> None:
        name = "s:" + _SEP.join(key)
        self._cache.set(name, self._cache.get(name, 0) + value)

    def counters(self) -> dict[tuple[str, str, str], float]:
        with self._translate("read"):
            out = {}
            for key in self._keys("s:"):
                tenant, model, counter = key[2:].split(_SEP)
                out[(tenant, model, counter)] = self._cache.get(key, 0)
            return out

    def reset_counters(self) -> None:
        with self._translate("write"), self._cache.transact():
            for key in self._keys("s:"):
                self._cache.delete(key)

    # -- errors ----------------------------------------------------------------------------

    def _translate(self, what: str):
        return _Translate(self.directory, what)


class _Translate:
    """Turn SQLite/OS failures into StoreError, naming the directory and the operation."""

    __slots__ = ("directory", "what")

    def __init__(self, directory: str, what: str) -> None:
        self.directory, self.what = directory, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is not None and isinstance(exc, (sqlite3.Error, OSError, diskcache.Timeout)):
            raise StoreError(f"cannot {self.what} cache directory {self.directory!r}: {exc}") from exc
        return False
