"""A replica's view of a Redis store (``storage.mirror``) on a real redis-server: bounded replay,
rebuilds, snapshots, outages and the recent-entries copy; and the settings that wire a replica."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from conftest import WordEmbedder
from contracts import DIM, make_entry
from redis_server import fresh_prefix, redis_server, start_redis  # noqa: F401  (fixtures)
from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.errors import ConfigError
from semcache.storage.mirror import PAGE, EntryMeta, Mirror, RecentEntries
from semcache.storage.redis import RedisStore
from semcache.upstream.redis_limiter import RedisRateLimiter
from semcache.wiring import build_upstream, cache_from_settings, quota_name, snapshot_from_settings

pytestmark = pytest.mark.server

POLICY = MatchPolicy.cosine(0.9)
FRANCE = "what is the capital city of france"
FRANCE_PLEASE = "what is the capital city of france please"
SPAIN = "what is the capital city of spain"


class CountingStore(RedisStore):
    """A RedisStore that counts the calls a mirror makes (the same signatures, so it pages)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = {"get": 0, "get_many": 0, "changes_since": 0, "scan": 0}

    def get(self, entry_id):
        self.calls["get"] += 1
        return super().get(entry_id)

    def get_many(self, entry_ids):
        self.calls["get_many"] += 1
        return super().get_many(entry_ids)

    def changes_since(self, seq, limit=None):
        self.calls["changes_since"] += 1
        return super().changes_since(seq, limit)

    def scan(self):
        self.calls["scan"] += 1
        return super().scan()


@pytest.fixture
def stores(redis_server):  # noqa: F811
    """``stores(counting=False, **options)``: handles on one fresh prefix of the module's server."""
    prefix, opened = fresh_prefix(), []

    def make(counting: bool = False, url: str | None = None, **options) -> RedisStore:
        cls = CountingStore if counting else RedisStore
        from semcache.storage.redis import connect

        target = url or redis_server.url
        store = cls(connect(target), prefix=prefix, url=target, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _view(mirror: Mirror) -> dict[int, str]:
    return {i: m.exact_key for i, m in mirror.meta.items()}


def _scan(store: RedisStore) -> dict[int, str]:
    return {e.id: e.exact_key for e in store.scan()}


def _put_many(store: RedisStore, keys) -> list[int]:
    ids = []
    for key in keys:
        entry = make_entry(store, key, partition=f"p{hash(key) % 3}")
        store.put(entry)
        ids.append(entry.id)
    return ids


def test_replay_reads_the_log_in_pages_and_fetches_entries_in_batches(stores):
    writer, reader = stores(), stores(counting=True)
    mirror = Mirror(reader, DIM)
    mirror.sync()
    _put_many(writer, (f"k{i}" for i in range(2 * PAGE + 500)))
    reader.calls.update(get=0, get_many=0, changes_since=0, scan=0)
    mirror.sync()
    assert _view(mirror) == _scan(writer) and len(mirror) == 2 * PAGE + 500
    # three pages of the log, one batched read per page, never one read per change
    assert reader.calls == {"get": 0, "get_many": 3, "changes_since": 3, "scan": 0}
    assert mirror.seq == writer.head() and mirror.rebuilds == 1  # the first open only
    assert len(mirror.index) == len(mirror)


def test_a_replica_far_behind_rebuilds_from_a_scan_instead_of_replaying(stores):
    writer, reader = stores(), stores(counting=True)
    mirror = Mirror(reader, DIM)
    mirror.sync()
    for _ in range(130):  # the same 10 exact keys rewritten: ~2,600 changes for 10 entries
        _put_many(writer, (f"k{i}" for i in range(10)))
    reader.calls.update(get=0, get_many=0, changes_since=0, scan=0)
    mirror.sync()
    assert reader.calls["scan"] == 1 and reader.calls["changes_since"] == 0 and mirror.rebuilds == 2
    assert _view(mirror) == _scan(writer) and len(mirror) == 10


def test_a_trimmed_log_is_a_rebuild(stores):
    writer, reader = stores(log_keep=50), stores(counting=True)
    mirror = Mirror(reader, DIM)
    _put_many(writer, ["early"])
    mirror.sync()
    _put_many(writer, (f"k{i}" for i in range(400)))  # the stream keeps ~50-150 of these
    assert writer.changes_since(mirror.seq)[1] is None
    mirror.sync()
    assert mirror.rebuilds == 2 and _view(mirror) == _scan(writer) and len(mirror) == 401


def test_an_emptied_redis_is_a_rebuild_and_a_new_binding_even_at_the_same_head(start_redis):  # noqa: F811
    server = start_redis(persistence=False)
    reader, writer = RedisStore.from_url(server.url, prefix="p"), RedisStore.from_url(server.url, prefix="p")
    reader.bind("m", DIM)
    mirror = Mirror(reader, DIM, model_id="m", recent_bytes=10_000)
    mirror.sync()
    old = _put_many(writer, ["a", "b", "c"])
    mirror.sync()
    assert set(mirror.meta) == set(old) and len(mirror.recent) == 3
    head = reader.head()
    server.restart(kill=True)  # no persistence: Redis comes back empty, its epoch and binding gone
    new = _put_many(writer, ["x", "y", "z"])
    assert writer.head() == head  # the head caught up: only the epoch tells the data apart
    mirror.sync()
    assert set(mirror.meta) == set(new) and not set(old) & set(mirror.meta)
    assert all(mirror.recent.get(i) is None for i in old)  # no copy of the lost data is kept
    assert reader.meta()["model_id"] == "m"  # bound again after the rebuild
    reader.close()
    writer.close()


def test_a_snapshot_starts_a_replica_that_then_replays_from_its_seq(stores, tmp_path):
    path = tmp_path / "index.npz"
    writer = stores()
    writer.bind("m", DIM)
    first = Mirror(stores(), DIM, model_id="m", snapshot=path)
    ids = _put_many(writer, (f"k{i}" for i in range(300)))
    first.sync()
    assert first.save_snapshot() and path.is_file()
    later = _put_many(writer, ["after-1", "after-2"])
    writer.delete(ids[:5])
    reader = stores(counting=True)
    second = Mirror(reader, DIM, model_id="m", snapshot=path)
    second.sync()
    assert second.snapshot_loaded and reader.calls["scan"] == 0 and second.rebuilds == 0
    assert _view(second) == _scan(writer) and set(later) <= set(second.meta) and not set(ids[:5]) & set(second.meta)
    assert second.seq == writer.head()
    query = make_entry(writer, "probe").embedding
    partition = second.meta[ids[10]].partition
    assert set(second.index.search(partition, query, 400)[1].tolist()) == {
        i for i, m in second.meta.items() if m.partition == partition}


def test_a_snapshot_of_another_model_or_epoch_or_a_damaged_one_is_ignored(start_redis, tmp_path, caplog):  # noqa: F811
    server = start_redis(persistence=False)
    store = RedisStore.from_url(server.url, prefix="p")
    store.bind("m", DIM)
    _put_many(store, ["a", "b"])
    path = tmp_path / "index.npz"
    writer = Mirror(store, DIM, model_id="m", snapshot=path)
    writer.sync()
    writer.save_snapshot()
    other_model = Mirror(RedisStore.from_url(server.url, prefix="p"), DIM, model_id="another", snapshot=path)
    other_model._load_snapshot(*store.position())
    assert not other_model.snapshot_loaded and "built with model 'm'" in caplog.text
    server.restart(kill=True)
    store.bind("m", DIM)
    _put_many(store, ["c"])
    after_restart = Mirror(RedisStore.from_url(server.url, prefix="p"), DIM, model_id="m", snapshot=path)
    after_restart.sync()
    assert not after_restart.snapshot_loaded and after_restart.rebuilds == 1
    assert [m.exact_key for m in after_restart.meta.values()] == ["c"]
    path.write_bytes(b"not a snapshot")
    damaged = Mirror(RedisStore.from_url(server.url, prefix="p"), DIM, model_id="m", snapshot=path)
    damaged.sync()
    assert not damaged.snapshot_loaded and len(damaged) == 1 and "cannot read the index snapshot" in caplog.text
    store.close()


def test_the_store_wins_over_a_snapshot_that_disagrees(stores, tmp_path):
    path = tmp_path / "index.npz"
    writer = stores()
    ids = _put_many(writer, ["a", "b", "c"])
    mirror = Mirror(stores(), DIM, snapshot=path)
    mirror.sync()
    # an entry the store never held (say, a snapshot written by a buggy build): the count disagrees
    mirror.meta[10**15] = EntryMeta("p0", "ghost", "q", None, 1, 0.0, ())
    mirror.exact["ghost"] = 10**15
    mirror.save_snapshot()
    reader = stores(counting=True)
    fresh = Mirror(reader, DIM, snapshot=path)
    fresh.sync()
    assert reader.calls["scan"] == 1 and not fresh.snapshot_loaded
    assert set(fresh.meta) == set(ids) and "ghost" not in fresh.exact


def test_during_an_outage_hits_come_from_recent_copies_never_deleted_or_expired_ones(start_redis, clock, caplog):  # noqa: F811
    server = start_redis(persistence=False)
    store = RedisStore.from_url(server.url, prefix="p")
    cache = SemanticCache(store=store, embedder=WordEmbedder(), policy=POLICY, timer=clock, flush_interval=None)
    kept = cache.insert(FRANCE, {"answer": "Paris"})
    doomed = cache.insert(SPAIN, {"answer": "Madrid"})
    short = cache.insert("how tall is the eiffel tower", {"answer": "330 m"}, ttl=60)
    other = RedisStore.from_url(server.url, prefix="p")
    other.delete([doomed.id])  # by another replica, before the outage
    assert cache.lookup(FRANCE).entry.id == kept.id  # this lookup syncs: the delete is applied
    server.stop()
    with caplog.at_level(logging.WARNING, logger="semcache"):
        assert cache.lookup(FRANCE).entry.id == kept.id
        semantic = cache.lookup(FRANCE_PLEASE)
        assert semantic.kind == "semantic" and semantic.response == {"answer": "Paris"}
        assert cache.lookup(SPAIN) is None  # deleted before the outage: its copy went with it
        assert cache.lookup("how tall is the eiffel tower").entry.id == short.id
        clock.advance(61)
        assert cache.lookup("how tall is the eiffel tower") is None  # expired meanwhile: never served
        for _ in range(20):
            assert cache.lookup(FRANCE) is not None
    outage_warnings = [r for r in caplog.records if "cannot read the store" in r.getMessage()]
    assert len(outage_warnings) == 1  # logged once, not per lookup
    server.start()  # back, empty (no persistence)
    deadline = time.monotonic() + 10
    while cache._mirror.unreachable and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cache._mirror.unreachable
    assert cache.lookup(FRANCE) is None and len(cache) == 0  # rebuilt from the empty store: no old answer
    assert store.meta()["model_id"] == WordEmbedder.model_id  # bound again
    cache.close()
    other.close()


def test_without_a_copy_a_hit_during_an_outage_fails_open(start_redis):  # noqa: F811
    server = start_redis(persistence=False)
    cache = SemanticCache(store=RedisStore.from_url(server.url, prefix="p"), embedder=WordEmbedder(), policy=POLICY,
                          recent_bytes=0, flush_interval=None)
    cache.insert(FRANCE, {"answer": "Paris"})
    server.stop()
    assert cache.lookup(FRANCE) is None  # the index knows it, but there is nothing to answer with
    result = cache.complete(FRANCE, call=lambda request: {"answer": "Paris, again"})
    assert result.status == "miss" and result.lookup_error == "StoreError" and result.store_error == "StoreError"
    cache._mirror.close()


def test_recent_entries_are_a_least_recently_used_copy_bounded_by_bytes():
    recent = RecentEntries(250)
    entries = [make_entry(type("Ids", (), {"next_id": lambda self, i=i: i})(), f"k{i}") for i in range(4)]  # 99 bytes each
    for entry in entries[:2]:
        recent.put(entry)
    assert recent.get(entries[0].id) is entries[0]  # now the most recent
    recent.put(entries[2])
    assert recent.get(entries[1].id) is None and recent.bytes == 198 and len(recent) == 2
    recent.discard(entries[0].id)
    assert recent.bytes == 99
    recent.put(entries[3].with_(size=10_000))  # larger than the whole copy: not kept
    assert recent.get(entries[3].id) is None and RecentEntries(0).max_bytes == 0


# -- settings and wiring ---------------------------------------------------------------------------


def test_the_store_setting_builds_a_redis_cache_and_one_shared_quota_per_key(redis_server, tmp_path):  # noqa: F811
    prefix = fresh_prefix()
    settings = Settings.load(environ={"SEMCACHE_STORE": redis_server.url, "SEMCACHE_STORE_PREFIX": prefix,
                                      "SEMCACHE_CACHE_DIR": str(tmp_path), "SEMCACHE_RPM": "7", "SEMCACHE_TPM": "9000",
                                      "SEMCACHE_REDIS_LOCAL_SHARE": "0.5"})
    cache = cache_from_settings(settings, embedder=WordEmbedder(), policy=POLICY)
    try:
        assert isinstance(cache.store, RedisStore) and cache.store.prefix == prefix
        assert snapshot_from_settings(settings) == str(tmp_path / f"index-snapshot.{prefix}.npz")
        first = build_upstream(settings, "sk-secret-one", store=cache.store)
        again = build_upstream(settings, "sk-secret-one", store=cache.store)
        other = build_upstream(settings, "sk-secret-two", store=cache.store)
        assert isinstance(first.limiter, RedisRateLimiter)
        assert (first.limiter.rpm, first.limiter.tpm, first.limiter.local_share) == (7, 9000, 0.5)
        assert first.limiter.name == again.limiter.name == quota_name("sk-secret-one") != other.limiter.name
        assert "secret" not in first.limiter.name and "secret" not in repr(first.limiter)
        local = build_upstream(settings.replace(store=None), "sk-secret-one")
        assert not isinstance(local.limiter, RedisRateLimiter)
    finally:
        cache.close()


def test_a_replica_with_another_model_is_refused_and_a_bad_store_url_too(redis_server, tmp_path):  # noqa: F811
    prefix = fresh_prefix()
    settings = Settings(store=redis_server.url, store_prefix=prefix, cache_dir=str(tmp_path))
    with cache_from_settings(settings, embedder=WordEmbedder(), policy=POLICY) as cache:
        cache.insert(FRANCE, {"answer": "Paris"})

    class Other(WordEmbedder):
        model_id = "another-model"

    with pytest.raises(ConfigError, match=r"was built with model '(languages\(\*=)?test-words.*not '(languages\(\*=)?another-model"):
        cache_from_settings(settings, embedder=Other(), policy=POLICY)
    with pytest.raises(ConfigError, match="must be a Redis URL"):
        Settings(store="http://user:pw@example.com")
    assert "pw" not in repr(Settings(store="redis://:pw@127.0.0.1:1/0"))


def test_the_redis_password_comes_from_the_environment_never_from_a_setting(start_redis, tmp_path):  # noqa: F811
    server = start_redis(password="s3cret-pw")
    url = f"redis://127.0.0.1:{server.port}/0"  # no password in the URL
    settings = Settings(store=url, cache_dir=str(tmp_path), snapshot_file="")
    environ = {"SEMCACHE_REDIS_PASSWORD": "s3cret-pw"}
    with cache_from_settings(settings, embedder=WordEmbedder(), policy=POLICY, environ=environ) as cache:
        cache.insert(FRANCE, {"answer": "Paris"})
        assert cache.lookup(FRANCE) is not None and "s3cret" not in repr(cache.store)
    with pytest.raises(Exception, match="(?i)auth") as refused:
        cache_from_settings(settings, embedder=WordEmbedder(), policy=POLICY, environ={})
    assert "s3cret" not in str(refused.value)


def test_snapshot_settings():
    assert snapshot_from_settings(Settings()) is None  # the local directory rebuilds from disk
    assert snapshot_from_settings(Settings(store="redis://h:1/0", snapshot_file="")) is None
    assert snapshot_from_settings(Settings(store="redis://h:1/0", snapshot_file="/x/s.npz")) == "/x/s.npz"
    with pytest.raises(ConfigError, match="redis_local_share"):
        Settings(redis_local_share=1.5)
    assert np.isclose(Settings.load(environ={"SEMCACHE_SNAPSHOT_INTERVAL": "60"}).snapshot_interval, 60.0)


def test_an_id_that_names_another_entry_in_the_store_makes_the_index_rebuild(stores):
    """A Redis restored from an older snapshot hands out ids again: the store wins, never a wrong answer."""
    writer, reader = stores(), stores()
    mirror = Mirror(reader, DIM)
    mirror.sync()
    [entry_id] = _put_many(writer, ["mine"])
    mirror.sync()
    other = make_entry(writer, "someone else's").with_(id=entry_id)
    writer.client.hset(writer._e, str(entry_id), other.to_record())  # behind the log's back
    mirror.recent.discard(entry_id)
    assert mirror.read(entry_id) is None  # not served for the key the index has for it
    mirror.sync()
    assert mirror.rebuilds == 2 and mirror.meta[entry_id].exact_key == "someone else's"


def test_put_many_stores_each_entry_atomically_and_logged(stores):
    store = stores(page=7)
    entries = [make_entry(store, f"k{i}") for i in range(20)] + [make_entry(store, "k3")]  # the last replaces k3
    assert store.put_many(entries) == 21
    assert store.count() == 20 and store.get_exact("k3").id == entries[-1].id
    mirror = Mirror(stores(), DIM)
    mirror.sync()
    assert _view(mirror) == _scan(store)


def test_tenant_limits_of_client_keys_are_shared_by_replicas_on_redis(redis_server, tmp_path):  # noqa: F811
    from semcache.server import create_app

    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": [{"key": "sk-team-a", "tenant": "team-a", "rpm": 3}]}')
    settings = Settings(store=redis_server.url, store_prefix=fresh_prefix(), cache_dir=str(tmp_path), client_keys_file=str(keys))
    cache = cache_from_settings(settings, embedder=WordEmbedder(), policy=POLICY)
    try:
        app = create_app(settings, cache=cache, environ={"OPENAI_API_KEY": "sk-own"})
        quota = app.state.sidecar.quotas["team-a"]
        assert isinstance(quota.limiter, RedisRateLimiter) and quota.limiter.rpm == 3 and "team-a" not in quota.limiter.name
        upstream = app.state.sidecar.upstreams.for_caller(None)
        assert isinstance(upstream.limiter, RedisRateLimiter) and upstream.limiter.name == quota_name("sk-own")
    finally:
        cache.close()


def test_a_sidecar_saves_its_index_snapshot_while_serving_and_the_next_one_starts_from_it(redis_server, tmp_path):  # noqa: F811
    import json as _json

    import openai

    from semcache.server import create_app
    from semcache.testing.mock import create_app as create_mock
    from semcache.testing.serving import running_server

    POLICY.save(tmp_path / "policy.json")
    snapshot = tmp_path / "replica.npz"
    with running_server(create_mock()) as mock:
        settings = Settings(store=redis_server.url, store_prefix=fresh_prefix(), cache_dir=str(tmp_path / "c"),
                            snapshot_file=str(snapshot), snapshot_interval=0.2, policy=str(tmp_path / "policy.json"),
                            upstream_base_url=mock + "/v1", pass_through_key=False)
        app = create_app(settings, environ={"OPENAI_API_KEY": "sk-own"}, embedder=WordEmbedder())
        with running_server(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": FRANCE}])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the timer's snapshot, taken while serving
                if snapshot.is_file():
                    with np.load(snapshot) as data:
                        if _json.loads(data["header"].tobytes())["entries"] == 1:
                            break
                time.sleep(0.05)
            else:
                raise AssertionError("no snapshot was saved while serving")
            client.close()
    # shut down: the last snapshot reflects the store's head; a new replica starts from it
    with cache_from_settings(settings, embedder=WordEmbedder()) as replica:
        assert replica._mirror.snapshot_loaded and replica._mirror.rebuilds == 0
        assert replica.lookup({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": FRANCE}]},
                              tenant=tenant_of("sk-caller")) is not None


def tenant_of(key: str) -> str:
    from semcache.keys import tenant_from_api_key

    return tenant_from_api_key(key)
