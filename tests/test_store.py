"""Store contract, run against every implementation (DiskStore today, Redis later)."""

from __future__ import annotations

import numpy as np
import pytest

from semcache.storage import disk as store_module
from semcache.errors import ConfigError
from semcache.storage.disk import DiskStore
from semcache.storage.entry import Change, Entry

DIM = 4


def make_entry(store, exact_key: str, *, partition: str = "p", query: str = "q", entry_id: int | None = None) -> Entry:
    vector = np.arange(DIM, dtype=np.float32) / 10
    return Entry(
        id=store.next_id() if entry_id is None else entry_id, partition=partition, exact_key=exact_key,
        query_text=query, embedding=vector, response={"choices": [{"message": {"content": exact_key}}]},
        model="m", tenant="t", prompt_tokens=3, completion_tokens=5, created_at=10.0, expires_at=20.0, size=99,
    )


@pytest.fixture(params=["disk"])
def make_store(request, tmp_path):
    """Open stores of the implementation under test; two calls with one name share the data."""
    opened = []

    def make(name: str = "store"):
        if request.param == "disk":
            store = DiskStore(str(tmp_path / name))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_put_get_and_get_exact_round_trip(make_store):
    store = make_store()
    entry = make_entry(store, "k1")
    store.put(entry)
    got = store.get(entry.id)
    assert got.response == entry.response
    assert (got.partition, got.exact_key, got.query_text, got.expires_at, got.size) == ("p", "k1", "q", 20.0, 99)
    np.testing.assert_array_equal(got.embedding, entry.embedding)
    assert got.embedding.dtype == np.float32
    assert store.get_exact("k1").id == entry.id
    assert store.get(entry.id + 1000) is None
    assert store.get_exact("nope") is None


def test_ids_are_unique_and_increasing(make_store):
    store = make_store()
    ids = [store.next_id() for _ in range(5)]
    assert ids == sorted(set(ids))


def test_putting_the_same_exact_key_replaces_the_entry(make_store):
    store = make_store()
    first = make_entry(store, "k")
    store.put(first)
    head = store.head()
    second = make_entry(store, "k", query="q2")
    store.put(second)
    assert store.get(first.id) is None
    assert store.get_exact("k").id == second.id
    assert [e.id for e in store.scan()] == [second.id]
    assert store.changes_since(head)[1] == [Change(head + 1, "del", first.id), Change(head + 2, "put", second.id)]


def test_delete_logs_and_counts_only_existing_entries(make_store):
    store = make_store()
    entries = [make_entry(store, f"k{i}") for i in range(3)]
    for entry in entries:
        store.put(entry)
    head = store.head()
    assert store.delete([entries[0].id, entries[2].id, 12345]) == 2
    assert store.get_exact("k0") is None and store.get(entries[0].id) is None
    new_head, changes = store.changes_since(head)
    assert new_head == head + 2
    assert [(c.op, c.entry_id) for c in changes] == [("del", entries[0].id), ("del", entries[2].id)]
    assert len(store) == 1


def test_changes_since_is_ordered_and_incremental(make_store):
    store = make_store()
    assert store.changes_since(0) == (0, [])
    ids = []
    for i in range(4):
        entry = make_entry(store, f"k{i}")
        ids.append(entry.id)
        store.put(entry)
    head, changes = store.changes_since(0)
    assert head == 4
    assert [c.seq for c in changes] == [1, 2, 3, 4]
    assert [c.entry_id for c in changes] == ids
    assert store.changes_since(2)[1] == changes[2:]
    assert store.changes_since(head) == (head, [])


def test_the_log_is_trimmed_and_then_cannot_be_replayed(make_store, monkeypatch):
    monkeypatch.setattr(store_module, "LOG_KEEP", 10)
    store = make_store()
    entry = make_entry(store, "k")
    store.put(entry)
    store.update([entry] * 1100, log=True)  # one transaction, 1100 change records
    head, changes = store.changes_since(0)
    assert head == 1101
    assert changes is None  # too far behind: the reader must rebuild from scan()
    head, recent = store.changes_since(head - 5)
    assert [c.seq for c in recent] == list(range(head - 4, head + 1))


def test_update_skips_entries_deleted_meanwhile(make_store):
    store = make_store()
    entry = make_entry(store, "k")
    store.put(entry)
    store.delete([entry.id])
    store.update([entry.with_(hits=3)])
    assert store.get(entry.id) is None
    assert len(store) == 0


def test_clear_deletes_every_entry_and_logs_it(make_store):
    store = make_store()
    for i in range(3):
        store.put(make_entry(store, f"k{i}"))
    head = store.head()
    store.clear()
    assert len(store) == 0 and list(store.scan()) == []
    assert [c.op for c in store.changes_since(head)[1]] == ["del"] * 3


def test_a_second_handle_on_the_same_data_sees_writes(make_store):
    writer, reader = make_store("shared"), make_store("shared")
    entry = make_entry(writer, "k")
    writer.put(entry)
    assert reader.head() == writer.head()
    assert reader.get_exact("k").id == entry.id


def test_an_empty_store_rebinds_to_another_model(make_store):
    store = make_store()
    store.bind("model-a", 384)
    store.bind("model-b", 768)  # nothing was embedded with model-a: nothing can mismatch
    assert (store.meta()["model_id"], store.meta()["dim"]) == ("model-b", 768)


def test_bind_refuses_another_model_or_dim_once_it_holds_entries(make_store):
    store = make_store()
    store.bind("model-a", 384)
    store.bind("model-a", 384)  # same model again: fine
    assert store.meta()["model_id"] == "model-a"
    store.put(make_entry(store, "k1"))
    for model, dim in (("model-b", 384), ("model-a", 768)):
        with pytest.raises(ConfigError) as caught:
            store.bind(model, dim)
        message = str(caught.value)
        assert "model-a" in message and "384" in message
        assert model in message and str(dim) in message


def test_counters_add_up_and_reset(make_store):
    store = make_store()
    store.add_counters({("t1", "m", "requests"): 2, ("t2", "", "requests"): 1})
    store.add_counters({("t1", "m", "requests"): 3, ("t1", "m", "cost_saved_usd"): 0.25})
    assert store.counters() == {("t1", "m", "requests"): 5, ("t2", "", "requests"): 1, ("t1", "m", "cost_saved_usd"): 0.25}
    store.reset_counters()
    assert store.counters() == {}


def test_corrupt_directory_raises_config_error(tmp_path):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError) as caught:
        DiskStore(str(directory))
    assert str(directory) in str(caught.value)


def test_entry_expiry_is_inclusive():
    entry = Entry(1, "p", "k", "q", None, "r", expires_at=5.0)
    assert not entry.expired(4.999) and entry.expired(5.0)
    assert not Entry(1, "p", "k", "q", None, "r").expired(1e12)
    assert Entry.from_record(entry.to_record()) == entry
