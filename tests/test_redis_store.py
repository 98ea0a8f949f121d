"""The store seams' contract suites on RedisStore against a real redis-server, plus what only a
shared server can get wrong: atomic visibility, trimming, restarts, outages, secrets in URLs."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from contracts import DIM, StoreContract, make_entry
from redis_server import fresh_prefix, redis_server, start_redis  # noqa: F401  (fixtures)
from semcache import SemanticCache
from semcache.errors import ConfigError, StoreError
from semcache.matching.policy import MatchPolicy
from semcache.storage.mirror import Mirror
from semcache.storage.redis import RedisStore, redact_url

pytestmark = pytest.mark.server


@pytest.fixture
def make_redis_store(redis_server):  # noqa: F811
    """Open RedisStores on the module's server; each test gets prefixes no other test uses."""
    base = fresh_prefix()
    opened = []

    def make(name: str = "store", log_keep: int | None = None, **options) -> RedisStore:
        store = RedisStore.from_url(redis_server.url, prefix=f"{base}:{name}", **({"log_keep": log_keep} if log_keep else {}), **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


class TestRedisStore(StoreContract):
    @pytest.fixture
    def make_store(self, make_redis_store):
        return make_redis_store


def _raw(store: RedisStore) -> redis.Redis:
    return store.client


# -- atomic visibility ---------------------------------------------------------------------

def _snapshot(store: RedisStore):
    """Read everything a write touches in one MULTI/EXEC: a consistent cut between scripts."""
    pipe = store.client.pipeline(transaction=True)
    pipe.get(store._seq)
    pipe.hgetall(store._e)
    pipe.hgetall(store._k)
    pipe.hgetall(store._x)
    pipe.xrevrange(store._log, count=1)
    return pipe.execute()


def test_a_reader_never_sees_an_entry_without_its_pointer_or_change_record(make_redis_store):
    """Writers replace, add and delete while a reader takes consistent cuts: in every cut each
    entry has its exact-key record and is what its pointer names, every pointer names an entry,
    and the log's last record is the head, so no write is ever visible half done."""
    writers = [make_redis_store("shared") for _ in range(3)]
    reader = make_redis_store("shared")
    done = threading.Event()
    cuts, problems = [], []

    def write(store, n):
        for i in range(120):
            entry = make_entry(store, f"k{(i * 7 + n) % 15}")
            store.put(entry)
            if i % 10 == 9:
                store.delete([entry.id])

    def read():
        while not done.is_set() or not cuts:
            seq, entries, exact_of, pointers, last = _snapshot(reader)
            cuts.append(seq)
            if set(entries) != set(exact_of):
                problems.append(("entry without exact key", set(entries) ^ set(exact_of)))
            for entry_id, exact in exact_of.items():
                if pointers.get(exact) != entry_id:
                    problems.append(("entry not pointed at", entry_id, exact))
            for exact, entry_id in pointers.items():
                if entry_id not in entries or exact_of[entry_id] != exact:
                    problems.append(("pointer to nothing", exact, entry_id))
            if seq is not None and (not last or int(last[0][0].split(b"-")[0]) != int(seq)):
                problems.append(("head without its change record", seq, last))

    threads = [threading.Thread(target=write, args=(store, n)) for n, store in enumerate(writers)]
    watcher = threading.Thread(target=read)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert problems == []
    assert len(set(cuts)) > 10  # the reader did look between writes
    assert reader.count() == len(reader.exact_pointers()) <= 15


def test_a_mirror_on_another_handle_stays_in_step_while_others_write(make_redis_store):
    """The index of a second replica follows the stream (paging through it) and ends equal to a scan."""
    writer, other = make_redis_store("shared"), make_redis_store("shared", page=7)
    mirror = Mirror(other, DIM)
    mirror.sync()

    def write():
        for i in range(150):
            writer.put(make_entry(writer, f"k{i % 40}", partition=f"p{i % 3}"))
            if i % 13 == 0:
                writer.delete([writer.head()])  # a seq is never an entry id: nothing deleted, nothing logged

    thread = threading.Thread(target=write)
    thread.start()
    while thread.is_alive():
        mirror.sync()
    thread.join()
    mirror.sync()
    stored = {e.id: e.exact_key for e in other.scan()}
    assert {i: m.exact_key for i, m in mirror.meta.items()} == stored
    assert mirror.exact == {k: i for i, k in stored.items()} and len(stored) == 40


def test_changes_since_pages_through_a_long_log(make_redis_store):
    store = make_redis_store(page=100)
    entry = make_entry(store, "k")
    store.put(entry)
    start = store.head()
    store.update([entry] * 2_345)  # three write scripts (BATCH), one record each
    head, changes = store.changes_since(start)
    assert head == start + 2_345
    assert [c.seq for c in changes] == list(range(start + 1, head + 1))
    assert {(c.op, c.entry_id) for c in changes} == {("put", entry.id)}


def test_the_log_is_trimmed_to_about_log_keep_and_reaches_back_that_far(make_redis_store):
    store = make_redis_store(log_keep=250)
    entry = make_entry(store, "k")
    store.put(entry)
    for _ in range(10):
        store.update([entry] * 100)
    length = _raw(store).xlen(store._log)
    assert 250 <= length <= 250 + 100  # MAXLEN ~: whole stream nodes (100 records) are dropped
    head = store.head()
    assert len(store.changes_since(head - 250)[1]) == 250  # the last log_keep changes always replay
    assert store.changes_since(0)[1] is None  # older ones are gone: rebuild from scan


def test_a_gap_in_the_log_is_a_rebuild_never_a_shorter_list(make_redis_store):
    store = make_redis_store()
    for i in range(5):
        store.put(make_entry(store, f"k{i}"))
    head = store.head()
    _raw(store).xdel(store._log, f"{head - 2}-0")  # a record lost in the middle
    assert store.changes_since(head - 4) == (head, None)
    assert [c.seq for c in store.changes_since(head - 2)[1]] == [head - 1, head]  # after the gap: fine


def test_keys_stay_under_their_prefix_and_prefixes_do_not_meet(make_redis_store, redis_server):  # noqa: F811
    first, second = make_redis_store("a"), make_redis_store("b")
    entry = make_entry(first, "k")
    first.put(entry)
    first.add_counters({("t", "m", "requests"): 1})
    first.add_total("budget", 5)
    first.acquire_lease("lease", 5)
    assert second.count() == 0 and second.get(entry.id) is None and second.head() == 0
    assert second.counters() == {} and second.total("budget") == 0 and second.acquire_lease("lease", 5)
    keys = {k.decode() for k in _raw(first).scan_iter(match=f"{first.prefix}:*", count=1000)}
    assert keys == {f"{first.prefix}:{name}" for name in ("e", "k", "x", "seq", "log", "ids", "epoch", "s", "t:budget", "lease:lease")}


def test_a_damaged_record_is_counted_logged_once_and_removed(make_redis_store, caplog):
    store = make_redis_store()
    good, bad, worse = (make_entry(store, f"k{i}") for i in range(3))
    for entry in (good, bad, worse):
        store.put(entry)
    _raw(store).hset(store._e, str(bad.id), b"{not json")
    _raw(store).hset(store._e, str(worse.id), b'{"id": 3}')  # fields missing
    head = store.head()
    with caplog.at_level(logging.WARNING, logger="semcache"):
        assert sorted(e.id for e in store.scan()) == [good.id]
        assert store.get(bad.id) is None and store.get_exact("k2") is None and store.count() == 1
    assert store.counters() == {("", "", "corrupt_records"): 2}
    assert sorted((c.op, c.entry_id) for c in store.changes_since(head)[1]) == [("del", bad.id), ("del", worse.id)]  # scan order
    assert store.exact_pointers() == {"k0": good.id}  # unlike a directory, their pointers go too
    assert sum("undecodable entry" in r.getMessage() for r in caplog.records) == 1


def test_get_many_reads_pages_and_skips_missing_and_corrupt_entries(make_redis_store):
    store = make_redis_store(page=3)
    entries = [make_entry(store, f"k{i}") for i in range(8)]
    for entry in entries:
        store.put(entry)
    store.delete([entries[1].id])
    _raw(store).hset(store._e, str(entries[2].id), b"garbage")
    wanted = [e.id for e in entries] + [entries[0].id, 999]
    got = store.get_many(wanted)
    assert sorted(got) == sorted(e.id for e in entries if e not in entries[1:3])
    assert got[entries[5].id].exact_key == "k5" and store.count() == 6


def test_get_exact_and_pointer_repair(make_redis_store):
    store = make_redis_store()
    entry = make_entry(store, "k")
    store.put(entry)
    assert store.get_exact("k").id == entry.id and store.get_exact("nope") is None
    assert store.drop_pointers(["k", "nope"]) == 1
    assert store.get_exact("k") is None and store.get(entry.id) is not None


def test_two_caches_on_one_redis_share_answers(make_redis_store, embedder):
    """The engine on RedisStore: a miss answered by one replica is a hit on another."""
    request = {"model": "m", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    first = SemanticCache(store=make_redis_store("shared"), embedder=embedder, policy=MatchPolicy.cosine(), flush_interval=0)
    second = SemanticCache(store=make_redis_store("shared"), embedder=embedder, policy=MatchPolicy.cosine(), flush_interval=0)
    try:
        assert second.lookup(request) is None
        first.insert(request, {"choices": [{"message": {"role": "assistant", "content": "Paris"}}]})
        hit = second.lookup(request)
        assert hit is not None and hit.kind == "exact" and hit.entry.response["choices"][0]["message"]["content"] == "Paris"
        first.invalidate([hit.entry.id])
        assert second.lookup(request) is None
    finally:
        first.close()
        second.close()


def test_a_replica_with_another_model_refuses_to_start(make_redis_store, embedder):
    cache = SemanticCache(store=make_redis_store("shared"), embedder=embedder, policy=MatchPolicy.cosine(), flush_interval=0)
    cache.insert({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {"answer": 1})
    cache.close()

    class OtherModel(type(embedder)):
        model_id = "another-model"

    with pytest.raises(ConfigError) as caught:
        SemanticCache(store=make_redis_store("shared"), embedder=OtherModel(), policy=MatchPolicy.cosine(), flush_interval=0)
    assert "test-words" in str(caught.value) and "another-model" in str(caught.value)


# -- restarts and outages ------------------------------------------------------------------

def test_a_restart_with_persistence_keeps_everything_and_the_handle_reconnects(start_redis):  # noqa: F811
    server = start_redis(persistence=True)
    store = RedisStore.from_url(server.url, prefix="p")
    store.bind("m", DIM)
    entries = [make_entry(store, f"k{i}") for i in range(5)]
    for entry in entries:
        store.put(entry)
    store.add_counters({("t", "m", "requests"): 3})
    store.add_total("budget", 42)
    head = store.head()
    store.changes_since(head)
    server.restart(kill=True)  # SIGKILL: the append-only file was fsynced on every write
    assert store.head() == head  # the same handle, a new connection
    assert store.changes_since(head) == (head, [])  # same epoch: no rebuild needed
    assert sorted(e.id for e in store.scan()) == [e.id for e in entries]
    assert store.counters() == {("t", "m", "requests"): 3} and store.total("budget") == 42
    assert store.meta()["model_id"] == "m"
    newer = make_entry(store, "k-new")
    assert newer.id > entries[-1].id and store.put(newer) == head + 1
    store.close()


def test_a_restart_without_persistence_is_an_empty_store_and_a_rebuild(start_redis):  # noqa: F811
    server = start_redis(persistence=False)
    store = RedisStore.from_url(server.url, prefix="p")
    mirror = Mirror(store, DIM)
    old = [make_entry(store, f"k{i}") for i in range(3)]
    for entry in old:
        store.put(entry)
    mirror.sync()
    assert len(mirror) == 3
    head = store.head()
    server.restart(kill=True)
    assert store.head() == 0 and store.count() == 0 and store.get(old[0].id) is None
    assert store.changes_since(head) == (0, None)  # the reader must rebuild, not keep stale vectors
    fresh = make_entry(store, "k0")
    assert fresh.id > max(e.id for e in old)  # ids are never reused: a stale index points at nothing
    store.put(fresh)
    mirror.sync()
    assert list(mirror.meta) == [fresh.id]
    store.close()


def test_a_new_epoch_is_a_rebuild_even_when_the_head_caught_up(start_redis):  # noqa: F811
    """Redis lost the data and new writes brought the head back past this reader's seq."""
    server = start_redis()
    store = RedisStore.from_url(server.url, prefix="p")
    store.put(make_entry(store, "a"))
    assert store.changes_since(0)[1] is not None  # seen: epoch one
    server.restart(kill=True)
    for key in ("b", "c"):
        store.put(make_entry(store, key))
    assert store.head() == 2
    assert store.changes_since(1) == (2, None)
    assert len(store.changes_since(2)[1]) == 0  # from here on, the new epoch replays normally
    store.close()


OPERATIONS = {
    "bind": lambda s: s.bind("m", DIM),
    "next_id": lambda s: s.next_id(),
    "get": lambda s: s.get(1),
    "get_exact": lambda s: s.get_exact("k"),
    "get_many": lambda s: s.get_many([1, 2]),
    "put": lambda s: s.put(_entry()),
    "update": lambda s: s.update([_entry()]),
    "delete": lambda s: s.delete([1]),
    "scan": lambda s: list(s.scan()),
    "count": lambda s: s.count(),
    "clear": lambda s: s.clear(),
    "head": lambda s: s.head(),
    "changes_since": lambda s: s.changes_since(0),
    "add_counters": lambda s: s.add_counters({("t", "m", "c"): 1}),
    "counters": lambda s: s.counters(),
    "reset_counters": lambda s: s.reset_counters(),
    "add_total": lambda s: s.add_total("b", 1),
    "reserve_total": lambda s: s.reserve_total("b", 1, 10),
    "total": lambda s: s.total("b"),
    "acquire_lease": lambda s: s.acquire_lease("l", 1.0),
    "release_lease": lambda s: s.release_lease("l", "token"),
    "meta": lambda s: s.meta(),
    "exact_pointers": lambda s: s.exact_pointers(),
    "drop_pointers": lambda s: s.drop_pointers(["k"]),
}


class _Ids:
    def next_id(self):
        return 1


def _entry():
    return make_entry(_Ids(), "k")  # no round trip for the id: the write itself must fail


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_an_unreachable_server_is_a_store_error_naming_the_operation_without_the_password(operation):
    with socket_nobody_listens() as port:
        store = RedisStore.from_url(f"redis://:s3cret-pw@127.0.0.1:{port}/0", prefix="p", timeout=1.0)
        with pytest.raises(StoreError) as caught:
            OPERATIONS[operation](store)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(store)
    assert f"redis://***@127.0.0.1:{port}/0" in message and "ConnectionError" in message
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)


class socket_nobody_listens:
    """A loopback port with nobody listening, held bound (not listening) so nothing else takes it."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_a_stopped_server_fails_each_call_and_the_store_recovers_when_it_is_back(start_redis):  # noqa: F811
    server = start_redis(persistence=True)
    store = RedisStore.from_url(server.url, prefix="p", timeout=1.0)
    entry = make_entry(store, "k")
    store.put(entry)
    server.stop()
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot read"):
        store.get(entry.id)
    assert time.monotonic() - started < 3  # refused, retried twice with backoff: never hangs
    server.start()
    assert store.get(entry.id).exact_key == "k"


def test_passwords_never_appear_in_repr_errors_or_logs(start_redis, caplog):  # noqa: F811
    server = start_redis(password="pa55-w0rd")
    good = RedisStore.from_url(server.url, prefix="p")
    good.put(make_entry(good, "k"))
    assert good.count() == 1  # the password in the URL authenticates
    assert "pa55-w0rd" not in repr(good) and "***@127.0.0.1" in repr(good)
    wrong = RedisStore.from_url(server.url.replace("pa55-w0rd", "not-it-pw"), prefix="p")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(StoreError) as caught:
            wrong.count()
        good.client.hset(good._e, str(good.next_id()), b"garbage")
        list(good.scan())  # logs the corrupt record, naming the store
    assert "not-it-pw" not in str(caught.value) and "Authentication" in str(caught.value)
    assert caplog.records and all("pa55-w0rd" not in r.getMessage() for r in caplog.records)
    good.close()
    wrong.close()


@pytest.mark.parametrize("url, shown", [
    ("redis://:secret@host:6379/0", "redis://***@host:6379/0"),
    ("redis://user:secret@host/1", "redis://***@host/1"),
    ("rediss://host:6380/0?password=secret&ssl_cert_reqs=none", "rediss://host:6380/0?password=***&ssl_cert_reqs=none"),
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_a_bad_url_or_prefix_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError) as caught:
        RedisStore.from_url("http://:hunter2@host/0")
    assert "hunter2" not in str(caught.value) and "http://***@host/0" in str(caught.value)
    with pytest.raises(ConfigError, match="prefix"):
        RedisStore.from_url("redis://host/0", prefix="")
