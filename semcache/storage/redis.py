"""Keep entries in Redis: the five store seams over one Redis database, shared by every replica.

The same rules as ``DiskStore``, on a server many processes and hosts reach: every write is one
Lua script (Redis runs a script atomically and, once it has written, to its end), so an entry,
its exact-key pointer and its change record appear together or not at all, and replacing an
exact key deletes the previous entry in the same step. The change log is a Redis Stream whose
entry ids are the change seqs (``<seq>-0``), so ``changes_since(seq)`` is an ``XRANGE`` from
``seq + 1``, read in pages of ``page`` records.

Keys, all under ``<prefix>:`` so several caches can share one Redis::

    meta        hash    format, model_id, dim: what the entries were embedded with
    epoch       string  a random token set by the first write: a new one means Redis lost the data
    seq         string  head of the change log (INCR, in the script that writes the change)
    ids         string  last entry id handed out; a fresh Redis starts it at its TIME in µs
    e           hash    <id> -> entry record (Entry.to_record: JSON bytes, stored as they are)
    k           hash    <id> -> exact key (a delete drops the pointer without decoding the record)
    x           hash    <exact_key> -> id
    log         stream  <seq>-0 {op: put|del, id}, trimmed to about ``log_keep`` records
    s           hash    <tenant>\\x1f<model>\\x1f<counter> -> float (HINCRBYFLOAT)
    t:<key>     string  a ledger total (INCRBY)
    v:<scope>   hash    tallies of one scope (answer-aware learning's evidence): name -> int (HINCRBY)
    lease:<name> string a lease's token, expiring with the lease (SET NX PX)

The trim is ``XADD ... MAXLEN ~ log_keep``: Redis drops whole stream nodes (100 records by
default), so the log keeps at least ``log_keep`` records and at most one node more, at O(1) per
write instead of exact trimming's node rewrites.

Why ids start from the server's clock: a Redis restarted without persistence comes back empty,
and a counter from 1 would hand out ids that a replica's index still holds for other answers.
Seeded with ``TIME`` in microseconds, a fresh counter is past every id handed out before, so a
stale index can only point at nothing (a miss), never at another entry. The epoch token lets
``changes_since`` answer ``(head, None)`` (rebuild) as soon as it sees the data was lost.

Every ``redis.exceptions.RedisError`` (refused, timed out, wrong type under the prefix, ...)
becomes ``StoreError`` naming the operation and the URL with any password replaced by ``***``.
Connections that a restart broke are retried (twice, backing off); timeouts are not, because
the command may have run. Redis should run with ``maxmemory-policy noeviction``: an evicting
Redis may drop the entries hash or the log behind the store's back.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
except ImportError as exc:  # an optional extra: semcache works without Redis
    raise ImportError("semcache's Redis store needs the redis client: pip install 'semcache-llm[redis]'") from exc

from ..errors import ConfigError, StoreError
from .entry import Change, CorruptRecord, Entry

__all__ = ["RedisStore", "connect", "redact_url", "scrub", "secrets_of"]

log = logging.getLogger("semcache")

FORMAT = 2  # the record format (Entry.to_record JSON), as DiskStore's
LOG_KEEP = 100_000  # change records kept; a replica further behind rebuilds its index
PAGE = 1_000  # records per XRANGE / HSCAN call: bounded replies, bounded time inside Redis
BATCH = 1_000  # entries per write script: a script blocks Redis while it runs
_SEP = "\x1f"
CORRUPT = ("", "", "corrupt_records")
_SECRET_PARAMS = ("password", "username", "user")

# -- the scripts: each runs atomically; every number passed to redis.call is a string ---------

# Shared by the writers: append one change record; the seq is INCR'd in the same script.
_APPEND = """
local function append(op, entry_id)
  local s = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[1], string.format('%d-0', s), 'op', op, 'id', entry_id)
  return s
end
local function drop(entry_id)
  if redis.call('HDEL', KEYS[1], entry_id) == 0 then return 0 end
  local exact = redis.call('HGET', KEYS[2], entry_id)
  redis.call('HDEL', KEYS[2], entry_id)
  if exact and redis.call('HGET', KEYS[3], exact) == entry_id then redis.call('HDEL', KEYS[3], exact) end
  append('del', entry_id)
  return 1
end
redis.call('SET', KEYS[6], ARGV[2], 'NX')
"""
# KEYS: e k x seq log epoch   ARGV: log_keep epoch id exact_key record
_PUT = _APPEND + """
local id, exact = ARGV[3], ARGV[4]
local previous = redis.call('HGET', KEYS[3], exact)
if previous and previous ~= id then drop(previous) end
local old_exact = redis.call('HGET', KEYS[2], id)
if old_exact and old_exact ~= exact and redis.call('HGET', KEYS[3], old_exact) == id then
  redis.call('HDEL', KEYS[3], old_exact)
end
redis.call('HSET', KEYS[1], id, ARGV[5])
redis.call('HSET', KEYS[2], id, exact)
redis.call('HSET', KEYS[3], exact, id)
return append('put', id)
"""
# KEYS: e k x seq log epoch   ARGV: log_keep epoch (id record)...
_UPDATE = _APPEND + """
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    append('put', ARGV[i])
  end
end
return 0
"""
# KEYS: e k x seq log epoch   ARGV: log_keep epoch id...
_DELETE = _APPEND + """
local n = 0
for i = 3, #ARGV do n = n + drop(ARGV[i]) end
return n
"""
# KEYS: e k x seq log epoch s   ARGV: log_keep epoch id record counter_field
# Removes the record only if it still holds the bytes that failed to decode.
_DROP_CORRUPT = _APPEND + """
if redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then return 0 end
drop(ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[7], ARGV[5], '1')
return 1
"""
# KEYS: x e   ARGV: exact_key
_GET_EXACT = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return {id, redis.call('HGET', KEYS[2], id)}
"""
# KEYS: meta e epoch   ARGV: format model_id dim epoch
_BIND = """
redis.call('SET', KEYS[3], ARGV[4], 'NX')
local m = redis.call('HMGET', KEYS[1], 'format', 'model_id', 'dim')
if m[1] and m[1] ~= ARGV[1] then return {'format', m[1], m[2] or '', m[3] or ''} end
if m[1] and m[2] == ARGV[2] and m[3] == ARGV[3] then return {'same'} end
if m[1] and redis.call('HLEN', KEYS[2]) > 0 then return {'mismatch', m[1], m[2] or '', m[3] or ''} end
redis.call('HSET', KEYS[1], 'format', ARGV[1], 'model_id', ARGV[2], 'dim', ARGV[3])
return {'bound'}
"""
# KEYS: ids
_NEXT_ID = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
end
return redis.call('INCR', KEYS[1])
"""
# KEYS: t:<key>   ARGV: amount limit
_RESERVE = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if total > tonumber(ARGV[2]) then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
# KEYS: lease:<name>   ARGV: token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def redact_url(url: str) -> str:
    """Return ``url`` with its user and password (and any ``password=`` query value) as ``***``."""
    try:
        parts = urlsplit(url)
        shown = url
        if "@" in parts.netloc:
            shown = shown.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            hidden = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
            shown = shown.replace("?" + parts.query, "?" + hidden, 1)
        return shown
    except ValueError:
        return "<a Redis URL that cannot be parsed>"


def secrets_of(url: str) -> list[str]:
    """Return the password (and user) in ``url``, to ``scrub`` from foreign error messages."""
    try:
        parts = urlsplit(url)
        found = [parts.password, parts.username]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS]
    except ValueError:
        return []
    return [s for s in found if s]


def connect(url: str, *, timeout: float = 5.0, password: str | None = None) -> "redis.Redis":
    """Return a redis-py client for ``url`` (``redis://``, ``rediss://``, ``unix://``); raise ``ConfigError``.

    It connects lazily. A connection broken by a server restart is retried twice (backing off
    50-500 ms); a timeout is not retried (the command may have run). ``timeout`` bounds every
    connect and reply, in seconds. ``password`` (read from the environment by the caller)
    replaces any password in the URL, so the URL itself need not hold a secret.
    """
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(redis.exceptions.ConnectionError,))
    extra = {"password": password} if password else {}
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry, **extra)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot use Redis URL {redact_url(url)!r}: {scrub(str(exc), secrets_of(url))}") from None


def scrub(text: str, secrets: list[str]) -> str:
    """Return ``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class RedisStore:
    """A ``Store`` in Redis, shared by every process and host that opens the same URL and prefix.

    Build it with ``RedisStore.from_url("redis://host:6379/0", prefix="semcache")``. Thread-safe
    (redis-py's connection pool). ``log_keep`` change records are kept (at least); ``page``
    bounds each read of the log or of the entries.
    """

    def __init__(self, client: "redis.Redis", *, prefix: str = "semcache", log_keep: int = LOG_KEEP,
                 page: int = PAGE, url: str = "redis://") -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"a Redis store needs a non-empty key prefix, got {prefix!r}")
        for name, value in (("log_keep", log_keep), ("page", page)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.client = client
        self.prefix = prefix
        self.log_keep = log_keep
        self.page = page
        self.url = redact_url(url)
        self._secrets = secrets_of(url)
        p = prefix + ":"
        self._meta, self._epoch_key, self._seq, self._ids = p + "meta", p + "epoch", p + "seq", p + "ids"
        self._e, self._k, self._x, self._log, self._s = p + "e", p + "k", p + "x", p + "log", p + "s"
        self._writes = [self._e, self._k, self._x, self._seq, self._log, self._epoch_key]
        scripts = {"put": _PUT, "update": _UPDATE, "delete": _DELETE, "drop_corrupt": _DROP_CORRUPT,
                   "get_exact": _GET_EXACT, "bind": _BIND, "next_id": _NEXT_ID, "reserve": _RESERVE, "release": _RELEASE}
        # register_script runs EVALSHA and reloads a script a restarted Redis no longer has.
        self._scripts = {name: client.register_script(source) for name, source in scripts.items()}
        self._epoch: bytes | None = None  # the data's epoch as this handle last saw it
        self._warned_corrupt = False

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "semcache", log_keep: int = LOG_KEEP, page: int = PAGE,
                 timeout: float = 5.0, password: str | None = None) -> "RedisStore":
        """Open the store at ``url`` under ``prefix`` (connects on first use); raise ``ConfigError`` for a bad URL."""
        store = cls(connect(url, timeout=timeout, password=password), prefix=prefix, log_keep=log_keep, page=page, url=url)
        if password:
            store._secrets.append(password)
        return store

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self.client.close()

    # -- what the entries were embedded with -------------------------------------------------

    def bind(self, model_id: str, dim: int) -> None:
        """Record the embedding model of a new (or empty) store; refuse one whose entries used another."""
        with self._translate("bind"):
            answer = self._run("bind", [self._meta, self._e, self._epoch_key], [FORMAT, model_id, int(dim), self._new_epoch()])
        status = _text(answer[0])
        if status == "format":
            raise ConfigError(f"Redis store {self.url!r} (prefix {self.prefix!r}) has an unknown format {_text(answer[1])!r}; "
                              "use another prefix")
        if status == "mismatch":
            raise ConfigError(
                f"Redis store {self.url!r} (prefix {self.prefix!r}) was built with model {_text(answer[2])!r} "
                f"(dim {_text(answer[3])}), not {model_id!r} (dim {dim}); use another prefix or clear it")

    def meta(self) -> dict | None:
        with self._translate("read the binding of"):
            raw = self.client.hgetall(self._meta)
        if not raw:
            return None
        meta = {_text(k): _text(v) for k, v in raw.items()}
        return {"format": int(meta["format"]), "model_id": meta.get("model_id"), "dim": int(meta["dim"])}

    # -- ledger: totals that replicas add to (budget spending) -------------------------------

    def add_total(self, key: str, amount: int) -> int:
        """Add ``amount`` to the total ``key`` atomically (every replica sees it); return the new total."""
        with self._translate("add to a total in"):
            return int(self.client.incrby(self._total(key), int(amount)))

    def reserve_total(self, key: str, amount: int, limit: int) -> int | None:
        """Add ``amount`` only if the total stays at or under ``limit``; return the new total, or None."""
        with self._translate("reserve from a total in"):
            total = self._run("reserve", [self._total(key)], [int(amount), int(limit)])
        return None if total is None else int(total)

    def total(self, key: str) -> int:
        with self._translate("read a total in"):
            return int(self.client.get(self._total(key)) or 0)

    def _total(self, key: str) -> str:
        return f"{self.prefix}:t:{key}"

    # -- tallies: small named integer histograms (the learning layer's evidence) -------------

    def add_tallies(self, scope: str, deltas: Mapping[str, int]) -> None:
        """Add each delta to the tally ``name`` of ``scope`` in one MULTI/EXEC (``HINCRBY`` each)."""
        if not deltas:
            return
        with self._translate("add tallies to"):
            pipe = self.client.pipeline(transaction=True)
            for name, amount in deltas.items():
                pipe.hincrby(f"{self.prefix}:v:{scope}", name, int(amount))
            pipe.execute()

    def tallies(self, scope: str) -> dict[str, int]:
        with self._translate("read tallies of"):
            raw = self.client.hgetall(f"{self.prefix}:v:{scope}")
        return {_text(k): int(v) for k, v in raw.items()}

    # -- leases: one replica at a time calls upstream for an exact key -----------------------

    def acquire_lease(self, name: str, ttl: float) -> str | None:
        """Take the lease ``name`` for ``ttl`` seconds if it is free (``SET NX PX``)."""
        token = uuid.uuid4().hex
        with self._translate("take a lease in"):
            taken = self.client.set(self._lease(name), token, nx=True, px=max(1, math.ceil(ttl * 1000)))
        return token if taken else None

    def release_lease(self, name: str, token: str) -> None:
        """Give the lease back, only if ``token`` still holds it (compare-and-delete)."""
        with self._translate("release a lease in"):
            self._run("release", [self._lease(name)], [token])

    def _lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    # -- entries -----------------------------------------------------------------------------

    def next_id(self) -> int:
        with self._translate("allocate an id in"):
            return int(self._run("next_id", [self._ids], []))

    def get(self, entry_id: int) -> Entry | None:
        with self._translate("read"):
            record = self.client.hget(self._e, str(int(entry_id)))
        return None if record is None else self._decode(int(entry_id), record)

    def get_many(self, entry_ids: Iterable[int]) -> dict[int, Entry]:
        """Return the entries that exist among ``entry_ids``, ``HMGET`` a page at a time.

        Replaying a long change log entry by entry would cost one round trip per change.
        """
        ids = list(dict.fromkeys(int(i) for i in entry_ids))
        found: dict[int, Entry] = {}
        for start in range(0, len(ids), self.page):
            chunk = ids[start:start + self.page]
            with self._translate("read"):
                records = self.client.hmget(self._e, [str(i) for i in chunk])
            for entry_id, record in zip(chunk, records):
                entry = None if record is None else self._decode(entry_id, record)
                if entry is not None:
                    found[entry_id] = entry
        return found

    def get_exact(self, exact_key: str) -> Entry | None:
        with self._translate("read"):
            found = self._run("get_exact", [self._x, self._e], [exact_key])
        if found is None or found[1] is None:
            return None
        return self._decode(int(found[0]), found[1])

    def _decode(self, entry_id: int, record: bytes) -> Entry | None:
        """Return the entry; a record that cannot be decoded is counted, logged once and removed (None)."""
        try:
            return Entry.from_record(record)
        except CorruptRecord as exc:
            failure = exc
        if not self._warned_corrupt:
            self._warned_corrupt = True
            log.warning("semcache: removed undecodable entry %s from %r (%s); later ones are counted in "
                        "'corrupt_records'", entry_id, self, failure)
        with self._translate("remove a corrupt record from"):
            self._run("drop_corrupt", [*self._writes, self._s],
                      [self.log_keep, self._new_epoch(), entry_id, record, _SEP.join(CORRUPT)])
        return None

    def put(self, entry: Entry) -> int:
        """Store an entry (replacing any entry of the same exact key); return its change seq."""
        record = entry.to_record()
        with self._translate("write"):
            return int(self._run("put", self._writes, [self.log_keep, self._new_epoch(), int(entry.id), entry.exact_key, record]))

    def put_many(self, entries: Iterable[Entry]) -> int:
        """Store entries as ``put`` does (each one atomic and logged, replacing its exact key), sending
        ``page`` scripts per round trip; return how many were stored. For bulk loads (a migration, a
        benchmark): a failure midway leaves the entries sent before it stored, each whole."""
        stored = 0
        with self._translate("write"):
            pipe = self.client.pipeline(transaction=False)
            for entry in entries:
                self._scripts["put"](keys=self._writes, client=pipe,
                                     args=[self.log_keep, self._new_epoch(), int(entry.id), entry.exact_key, entry.to_record()])
                stored += 1
                if stored % self.page == 0:
                    pipe.execute()
            pipe.execute()
        return stored

    def update(self, entries: Iterable[Entry]) -> None:
        """Rewrite existing entries (hits, recency, sliding expiry, feedback), each logged; skip deleted ones.

        Each run of ``BATCH`` entries is one atomic script (a script blocks Redis while it runs).
        """
        pairs: list = []
        for entry in entries:
            pairs += [int(entry.id), entry.to_record()]
        with self._translate("write"):
            for start in range(0, len(pairs), 2 * BATCH):
                self._run("update", self._writes, [self.log_keep, self._new_epoch(), *pairs[start:start + 2 * BATCH]])

    def delete(self, entry_ids: Iterable[int]) -> int:
        """Delete entries and their pointers (logged); return how many existed."""
        ids = [int(i) for i in entry_ids]
        removed = 0
        with self._translate("delete from"):
            for start in range(0, len(ids), BATCH):
                removed += int(self._run("delete", self._writes, [self.log_keep, self._new_epoch(), *ids[start:start + BATCH]]))
        return removed

    def scan(self) -> Iterator[Entry]:
        """Yield every entry once (in no particular order), ``HSCAN`` page by page; undecodable
        records are removed, not yielded. Entries written during the scan may or may not appear."""
        seen: set[int] = set()  # HSCAN may return a field twice while the hash is rehashed
        cursor = 0
        while True:
            with self._translate("scan"):
                cursor, page = self.client.hscan(self._e, cursor, count=self.page)
            for raw_id, record in page.items():
                entry_id = int(raw_id)
                if entry_id in seen:
                    continue
                seen.add(entry_id)
                entry = self._decode(entry_id, record)
                if entry is not None:
                    yield entry
            if cursor == 0:
                return

    def count(self) -> int:
        with self._translate("count the entries of"):
            return int(self.client.hlen(self._e))

    __len__ = count

    def clear(self) -> None:
        """Delete every entry (logged, so other replicas drop their vectors too)."""
        cursor = 0
        while True:
            with self._translate("scan"):
                cursor, page = self.client.hscan(self._k, cursor, count=self.page)
            if page:
                self.delete(int(i) for i in page)
            if cursor == 0:
                return

    def exact_pointers(self) -> dict[str, int]:
        """Return every exact key -> entry id pointer (for ``semcache doctor``)."""
        pointers, cursor = {}, 0
        while True:
            with self._translate("scan"):
                cursor, page = self.client.hscan(self._x, cursor, count=self.page)
            pointers.update({_text(k): int(v) for k, v in page.items()})
            if cursor == 0:
                return pointers

    def drop_pointers(self, exact_keys: Iterable[str]) -> int:
        """Delete exact-key pointers (``semcache doctor --repair``); return how many existed."""
        keys = list(exact_keys)
        with self._translate("delete from"):
            return sum(int(self.client.hdel(self._x, *keys[i:i + BATCH])) for i in range(0, len(keys), BATCH))

    # -- change log --------------------------------------------------------------------------

    def head(self) -> int:
        """Return the newest change seq: one ``GET``, done before every lookup."""
        with self._translate("read"):
            return int(self.client.get(self._seq) or 0)

    def position(self) -> tuple[str | None, int]:
        """Return (epoch, head) in one ``MGET``: a reader that saw both unchanged has nothing to replay.

        ``head`` alone cannot tell a Redis that lost its data and was written back up to the
        same seq from one where nothing happened; the epoch can (None before the first write).
        """
        with self._translate("read"):
            raw_head, epoch = self.client.mget(self._seq, self._epoch_key)
        return (None if epoch is None else _text(epoch)), int(raw_head or 0)

    def changes_since(self, seq: int, limit: int | None = None) -> tuple[int, list[Change] | None]:
        """Return (head, changes after ``seq``), or (head, None) when the log no longer reaches back.

        None also when Redis lost the data since this handle last looked (a new epoch, or a head
        behind ``seq``): the reader must rebuild from ``scan``. Reads ``page`` records per
        ``XRANGE``; a gap (trimmed meanwhile) is None too, never a silently shorter list.
        ``limit``: return at most that many changes (the oldest), still with the real head, so
        a reader far behind replays in bounded steps (``Mirror`` does).
        """
        with self._translate("read the change log of"):
            raw_head, epoch = self.client.mget(self._seq, self._epoch_key)
        head = int(raw_head or 0)
        lost = epoch is not None and self._epoch is not None and epoch != self._epoch
        if epoch is not None:
            self._epoch = epoch
        elif self._epoch is not None:
            lost = True  # the epoch is gone with the data; the next write sets a new one
        if lost or head < seq:
            return head, None
        changes: list[Change] = []
        expected = seq + 1
        last = head if limit is None else min(head, seq + max(1, int(limit)))
        while expected <= last:
            with self._translate("read the change log of"):
                records = self.client.xrange(self._log, f"{expected}-0", f"{last}-0", count=min(self.page, last - expected + 1))
            if not records:
                return head, None
            for record_id, fields in records:
                number = int(record_id.split(b"-", 1)[0])
                if number != expected:  # trimmed past ``seq``, or trimmed between two pages
                    return head, None
                changes.append(Change(number, _text(fields[b"op"]), int(fields[b"id"])))
                expected += 1
        return head, changes

    # -- stats counters ----------------------------------------------------------------------

    def add_counters(self, deltas: Mapping[tuple[str, str, str], float]) -> None:
        """Add every delta in one MULTI/EXEC (``HINCRBYFLOAT`` each)."""
        if not deltas:
            return
        with self._translate("add counters to"):
            pipe = self.client.pipeline(transaction=True)
            for key, value in deltas.items():
                pipe.hincrbyfloat(self._s, _SEP.join(key), float(value))
            pipe.execute()

    def counters(self) -> dict[tuple[str, str, str], float]:
        with self._translate("read the counters of"):
            raw = self.client.hgetall(self._s)
        out = {}
        for field, value in raw.items():
            tenant, model, counter = _text(field).split(_SEP)
            out[(tenant, model, counter)] = float(value)
        return out

    def reset_counters(self) -> None:
        with self._translate("reset the counters of"):
            self.client.delete(self._s)

    # -- plumbing ----------------------------------------------------------------------------

    def _run(self, script: str, keys: list, args: list):
        return self._scripts[script](keys=keys, args=args)

    @staticmethod
    def _new_epoch() -> str:
        return uuid.uuid4().hex  # set only if the data has none (SET NX): a fresh Redis gets a new one

    def _translate(self, what: str) -> "_Translate":
        return _Translate(self, what)


class _Translate:
    """Turn redis-py's errors into StoreError, naming the operation and the (redacted) URL."""

    __slots__ = ("store", "what")

    def __init__(self, store: RedisStore, what: str) -> None:
        self.store, self.what = store, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is not None and isinstance(exc, redis.exceptions.RedisError):
            detail = scrub(f"{type(exc).__name__}: {exc}", self.store._secrets)
            raise StoreError(f"cannot {self.what} Redis store {self.store.url!r} (prefix {self.store.prefix!r}): {detail}") from exc
        return False


def _text(value) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
