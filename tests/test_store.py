"""The store seams' contract suites on DiskStore, plus what only a directory can get wrong."""

from __future__ import annotations

import pickle
import sys
import types

import diskcache
import numpy as np
import pytest

from contracts import StoreContract, make_entry
from semcache.errors import ConfigError, StoreError
from semcache.storage.disk import DiskStore
from semcache.storage.entry import CorruptRecord, Entry, decode_response, encode_response


class TestDiskStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path):
        opened = []

        def make(name: str = "store", log_keep: int | None = None):
            store = DiskStore(str(tmp_path / name), **({"log_keep": log_keep} if log_keep else {}))
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()


def test_corrupt_directory_raises_config_error(tmp_path):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError) as caught:
        DiskStore(str(directory))
    assert str(directory) in str(caught.value)


def test_entry_expiry_is_inclusive_and_records_round_trip():
    entry = Entry.create(id=1, partition="p", exact_key="k", query_text="q", embedding=None, response="r", expires_at=5.0)
    assert not entry.expired(4.999) and entry.expired(5.0)
    assert not entry.with_(expires_at=None).expired(1e12)
    assert Entry.from_record(entry.to_record()) == entry
    assert b"pickle" not in entry.to_record() and entry.to_record().startswith(b"{")  # one JSON document


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True]}, "plain text", [], 7])
def test_json_responses_are_stored_as_themselves(value):
    assert decode_response(encode_response(value)) == value


@pytest.mark.parametrize("value", [(1, 2), {1: "int key"}, {"x": float("nan")}, object(), b"bytes"])
def test_responses_that_would_not_read_back_equal_are_refused(value):
    with pytest.raises(StoreError) as caught:
        encode_response(value)
    assert "cannot store a response of type" in str(caught.value)


def test_a_model_whose_class_is_gone_cannot_be_decoded():
    tagged = {"type": "model", "class": "semcache_no_such_module:Thing", "value": {"a": 1}}
    with pytest.raises(CorruptRecord):
        decode_response(tagged)


def _raw(store: DiskStore) -> diskcache.Cache:
    return store._cache


def test_a_damaged_record_is_counted_logged_once_and_removed(tmp_path, caplog):
    store = DiskStore(str(tmp_path / "c"))
    good, bad, worse = (make_entry(store, f"k{i}") for i in range(3))
    for entry in (good, bad, worse):
        store.put(entry)
    _raw(store).set(f"e:{bad.id}", b"{not json")
    _raw(store).set(f"e:{worse.id}", b'{"id": 3}')  # fields missing
    head = store.head()
    assert sorted(e.id for e in store.scan()) == [good.id]  # skipped, never raised
    assert store.get(bad.id) is None and store.count() == 1
    assert store.counters() == {("", "", "corrupt_records"): 2}
    assert [c.op for c in store.changes_since(head)[1]] == ["del", "del"]  # other processes drop their vectors
    assert sum("undecodable entry" in r.getMessage() for r in caplog.records) == 1
    store.close()


def test_a_format_1_record_is_read_and_an_unpicklable_one_removed(tmp_path, monkeypatch):
    """semcache 0.1 pickled records, SDK objects included; an upgrade that removes their class
    must not stop the cache from opening (it raised ModuleNotFoundError during the rebuild)."""
    module = types.ModuleType("semcache_test_vanishing")

    class Answer:
        def __init__(self, text):
            self.text = text

    Answer.__module__ = module.__name__
    Answer.__qualname__ = "Answer"
    module.Answer = Answer
    monkeypatch.setitem(sys.modules, module.__name__, module)
    store = DiskStore(str(tmp_path / "old"))
    store.bind("m", DIM := 4)
    _raw(store).set("meta", {"format": 1, "model_id": "m", "dim": DIM})
    vector = np.ones(DIM, np.float32).tobytes()
    legacy = {"id": 1, "partition": "p", "exact_key": "k1", "query_text": "q1", "embedding": vector,
              "response": {"choices": [{"message": {"content": "kept"}}]}, "rejected": []}
    doomed = {**legacy, "id": 2, "exact_key": "k2", "query_text": "q2", "response": Answer("gone")}
    _raw(store).set("e:1", legacy)
    _raw(store).set("e:2", doomed)
    _raw(store).set("x:k1", 1)
    store.close()
    monkeypatch.delitem(sys.modules, module.__name__)  # the "upgrade"
    reopened = DiskStore(str(tmp_path / "old"))
    reopened.bind("m", DIM)  # format 1 is readable: bound, upgraded to format 2
    assert reopened.meta()["format"] == 2
    assert [e.id for e in reopened.scan()] == [1]
    assert reopened.get(1).response == {"choices": [{"message": {"content": "kept"}}]}
    assert reopened.counters() == {("", "", "corrupt_records"): 1}
    reopened.put(reopened.get(1).with_(hits=1))  # rewritten as JSON
    assert isinstance(_raw(reopened).get("e:1"), bytes)
    reopened.close()


def test_legacy_pickles_never_make_a_new_record(tmp_path):
    store = DiskStore(str(tmp_path / "c"))
    entry = make_entry(store, "k")
    store.put(entry)
    raw = _raw(store).get(f"e:{entry.id}")
    assert isinstance(raw, bytes)
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(raw)
    store.close()
