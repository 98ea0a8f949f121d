"""``semcache doctor``: what a crash, an upgrade or a bug leaves in a store, found and repaired."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from contracts import make_entry
from semcache.cli import main
from semcache.storage.disk import DiskStore
from semcache.tools.doctor import diagnose, repair


def unit(dim: int = 4) -> np.ndarray:
    v = np.arange(1, dim + 1, dtype=np.float32)
    return v / np.linalg.norm(v)


def filled(tmp_path, n: int = 3) -> DiskStore:
    store = DiskStore(str(tmp_path / "c"))
    store.bind("m", 4)
    for i in range(n):
        store.put(make_entry(store, f"k{i}").with_(embedding=unit()))
    return store


def test_a_healthy_store_is_healthy(tmp_path):
    store = filled(tmp_path)
    report = diagnose(store)
    assert report.healthy and report.entries == 3
    assert report.log == {"head": 3, "replayable": True, "agrees": True, "logged_but_missing": 0, "stored_but_unlogged": 0}
    store.close()


def test_every_kind_of_damage_is_found_and_repaired(tmp_path, monkeypatch):
    store = filled(tmp_path, 5)
    raw = store._cache
    entries = sorted(store.scan(), key=lambda e: e.id)
    raw.set("x:gone", 999)  # a pointer to nothing
    raw.delete(f"x:{entries[0].exact_key}")  # an entry nothing points at
    store.update([entries[1].with_(embedding=np.ones(3, np.float32))])  # a vector of another dimension
    gone = entries[2].with_(payload={"type": "model", "class": "semcache_no_such_module:Answer", "value": {}})
    store.update([gone])  # an answer of a type that no longer exists
    raw.set(f"e:{entries[3].id}", b"\x00 not json")  # a damaged record
    report = diagnose(store)
    assert not report.healthy
    assert report.dangling_pointers == ["gone", entries[3].exact_key]  # the damaged record's pointer outlives it
    assert report.shadowed == [entries[0].id]
    assert report.bad_vectors == [entries[1].id]
    assert report.corrupt == [entries[2].id]
    assert report.removed_now == 1 and report.removed_undecodable == 1  # the damaged record, removed by the scan
    fixed = repair(store, report)
    assert fixed == {"removed_entries": 2, "dropped_pointers": 2, "repointed": 1}
    after = diagnose(store)
    assert after.healthy and after.entries == 2
    assert store.get_exact(entries[0].exact_key).id == entries[0].id
    store.close()


def test_an_entry_written_without_its_change_record_is_reported(tmp_path):
    store = filled(tmp_path, 2)
    extra = make_entry(store, "sneaky").with_(embedding=unit())
    store._cache.set(f"e:{extra.id}", extra.to_record())  # bypasses the logged write
    store._cache.set("x:sneaky", extra.id)
    report = diagnose(store)
    assert report.log["agrees"] is False and report.log["stored_but_unlogged"] == 1
    store.close()


def test_the_command_reports_repairs_and_exits_nonzero_while_unhealthy(tmp_path):
    store = filled(tmp_path)
    store._cache.set("x:gone", 999)
    store.close()
    runner = CliRunner()
    checked = runner.invoke(main, ["doctor", "--cache-dir", str(tmp_path / "c"), "--json"])
    assert checked.exit_code == 1
    assert json.loads(checked.output)["dangling_pointers"] == ["gone"]
    fixed = runner.invoke(main, ["doctor", "--cache-dir", str(tmp_path / "c"), "--repair"])
    assert fixed.exit_code == 0 and "now healthy" in fixed.output
    again = runner.invoke(main, ["doctor", "--cache-dir", str(tmp_path / "c")])
    assert again.exit_code == 0 and "dangling pointers 0" in again.output


def test_a_missing_directory_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["doctor", "--cache-dir", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no cache directory" in result.output
