"""Contract suites for the store seams, written once and run against every implementation.

A test class that inherits a contract provides the fixture ``make_store(name="store",
log_keep=None)``: it opens a store, and two calls with one ``name`` are two handles (two
processes' views) on the same data. ``tests/test_store.py`` runs them against ``DiskStore``;
``tests/test_redis_store.py`` against ``RedisStore`` on a real redis-server.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from semcache.errors import ConfigError
from semcache.storage.entry import Change, Entry

DIM = 4


def make_entry(store, exact_key: str, *, partition: str = "p", query: str = "q", response=None, expires_at=20.0) -> Entry:
    vector = np.arange(DIM, dtype=np.float32) / 10
    return Entry.create(
        id=store.next_id(), partition=partition, exact_key=exact_key, query_text=query, embedding=vector,
        response=response if response is not None else {"choices": [{"message": {"content": exact_key}}]},
        model="m", tenant="t", prompt_tokens=3, completion_tokens=5, created_at=10.0, expires_at=expires_at, size=99,
    )


class EntryStoreContract:
    """Entries: atomic, logged writes; exact-key replacement; a model binding."""

    def test_put_get_round_trip(self, make_store):
        store = make_store()
        entry = make_entry(store, "k1")
        store.put(entry)
        got = store.get(entry.id)
        assert got.response == entry.response
        assert (got.partition, got.exact_key, got.query_text, got.expires_at, got.size) == ("p", "k1", "q", 20.0, 99)
        np.testing.assert_array_equal(got.embedding, entry.embedding)
        assert got.embedding.dtype == np.float32
        assert store.get(entry.id + 1000) is None

    def test_sdk_response_objects_come_back_as_themselves(self, make_store):
        from openai.types.chat import ChatCompletion

        answer = ChatCompletion.model_validate({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        store = make_store()
        entry = make_entry(store, "k", response=answer)
        store.put(entry)
        got = make_store().get(entry.id).response  # another handle: decoded from what was stored
        assert type(got) is ChatCompletion and got == answer

    def test_ids_are_unique_and_increasing_across_handles(self, make_store):
        first, second = make_store("shared"), make_store("shared")
        ids = [store.next_id() for _ in range(5) for store in (first, second)]
        assert ids == sorted(set(ids))

    def test_putting_the_same_exact_key_replaces_the_entry(self, make_store):
        store = make_store()
        first = make_entry(store, "k")
        store.put(first)
        head = store.head()
        second = make_entry(store, "k", query="q2")
        store.put(second)
        assert store.get(first.id) is None
        assert [e.id for e in store.scan()] == [second.id]
        assert store.changes_since(head)[1] == [Change(head + 1, "del", first.id), Change(head + 2, "put", second.id)]

    def test_delete_logs_and_counts_only_existing_entries(self, make_store):
        store = make_store()
        entries = [make_entry(store, f"k{i}") for i in range(3)]
        for entry in entries:
            store.put(entry)
        head = store.head()
        assert store.delete([entries[0].id, entries[2].id, 12345]) == 2
        assert store.get(entries[0].id) is None
        new_head, changes = store.changes_since(head)
        assert new_head == head + 2
        assert [(c.op, c.entry_id) for c in changes] == [("del", entries[0].id), ("del", entries[2].id)]
        assert store.count() == 1

    def test_update_rewrites_logs_and_skips_entries_deleted_meanwhile(self, make_store):
        store = make_store()
        kept, gone = make_entry(store, "k1"), make_entry(store, "k2")
        store.put(kept)
        store.put(gone)
        store.delete([gone.id])
        head = store.head()
        store.update([kept.with_(hits=3, last_hit_at=15.0), gone.with_(hits=3)])
        assert store.get(kept.id).hits == 3 and store.get(kept.id).last_hit_at == 15.0
        assert store.get(gone.id) is None
        assert store.changes_since(head)[1] == [Change(head + 1, "put", kept.id)]  # other processes see recency

    def test_scan_yields_every_entry_once(self, make_store):
        store = make_store()
        ids = set()
        for i in range(25):
            entry = make_entry(store, f"k{i}", partition=f"p{i % 3}")
            store.put(entry)
            ids.add(entry.id)
        assert sorted(e.id for e in store.scan()) == sorted(ids)
        assert store.count() == 25

    def test_a_second_handle_on_the_same_data_sees_writes(self, make_store):
        writer, reader = make_store("shared"), make_store("shared")
        entry = make_entry(writer, "k")
        writer.put(entry)
        assert reader.head() == writer.head()
        assert reader.get(entry.id).exact_key == "k"

    def test_an_empty_store_rebinds_to_another_model(self, make_store):
        store = make_store()
        store.bind("model-a", 384)
        store.bind("model-b", 768)  # nothing was embedded with model-a: nothing can mismatch
        store.put(make_entry(store, "k"))
        with pytest.raises(ConfigError):
            store.bind("model-a", 384)

    def test_bind_refuses_another_model_or_dim_once_it_holds_entries(self, make_store):
        store = make_store()
        store.bind("model-a", 384)
        store.bind("model-a", 384)  # same model again: fine
        store.put(make_entry(store, "k1"))
        for model, dim in (("model-b", 384), ("model-a", 768)):
            with pytest.raises(ConfigError) as caught:
                make_store().bind(model, dim)
            message = str(caught.value)
            assert "model-a" in message and "384" in message
            assert model in message and str(dim) in message

    def test_concurrent_writers_of_one_exact_key_leave_one_entry(self, make_store):
        handles = [make_store("shared") for _ in range(4)]

        def write(store):
            for _ in range(10):
                store.put(make_entry(store, "same"))

        threads = [threading.Thread(target=write, args=(store,)) for store in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        survivors = list(handles[0].scan())
        assert len(survivors) == 1 and survivors[0].exact_key == "same"


class ChangeLogContract:
    """The change log: ordered, incremental, and honest about how far back it reaches."""

    def test_changes_since_is_ordered_and_incremental(self, make_store):
        store = make_store()
        start = store.head()
        assert store.changes_since(start) == (start, [])
        ids = []
        for i in range(4):
            entry = make_entry(store, f"k{i}")
            ids.append(entry.id)
            store.put(entry)
        head, changes = store.changes_since(start)
        assert head == start + 4
        assert [c.seq for c in changes] == [start + 1, start + 2, start + 3, start + 4]
        assert [c.entry_id for c in changes] == ids
        assert store.changes_since(start + 2)[1] == changes[2:]
        assert store.changes_since(head) == (head, [])

    def test_clear_deletes_every_entry_and_logs_it(self, make_store):
        store = make_store()
        for i in range(3):
            store.put(make_entry(store, f"k{i}"))
        head = store.head()
        store.clear()
        assert store.count() == 0 and list(store.scan()) == []
        assert [c.op for c in store.changes_since(head)[1]] == ["del"] * 3

    def test_a_trimmed_log_says_so_and_recent_changes_still_replay(self, make_store):
        store = make_store(log_keep=10)
        entry = make_entry(store, "k")
        store.put(entry)
        for _ in range(11):
            store.update([entry] * 100)  # 1,100 change records
        head, changes = store.changes_since(0)
        assert head >= 1101
        assert changes is None  # too far behind: the reader must rebuild from scan()
        head, recent = store.changes_since(head - 5)
        assert [c.seq for c in recent] == list(range(head - 4, head + 1))


class CounterStoreContract:
    """Counters: added atomically by every handle, read back summed, reset."""

    def test_counters_add_up_and_reset(self, make_store):
        store = make_store()
        store.add_counters({("t1", "m", "requests"): 2, ("t2", "", "requests"): 1})
        store.add_counters({("t1", "m", "requests"): 3, ("t1", "m", "cost_saved_usd"): 0.25})
        assert store.counters() == {("t1", "m", "requests"): 5, ("t2", "", "requests"): 1, ("t1", "m", "cost_saved_usd"): 0.25}
        store.reset_counters()
        assert store.counters() == {}

    def test_concurrent_handles_never_lose_an_increment(self, make_store):
        handles = [make_store("shared") for _ in range(4)]

        def add(store):
            for _ in range(50):
                store.add_counters({("t", "m", "requests"): 1, ("t", "m", "cost_saved_usd"): 0.5})

        threads = [threading.Thread(target=add, args=(store,)) for store in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handles[0].counters() == {("t", "m", "requests"): 200, ("t", "m", "cost_saved_usd"): 100.0}


class LedgerContract:
    """The ledger: atomic totals, and reservations that never exceed their limit together."""

    def test_totals_add_atomically_and_go_down_with_refunds(self, make_store):
        store = make_store()
        assert store.total("budget:x") == 0
        assert store.add_total("budget:x", 70) == 70
        assert store.add_total("budget:x", -20) == 50
        assert make_store().total("budget:x") == 50

    def test_a_reservation_is_refused_past_the_limit_and_changes_nothing(self, make_store):
        store = make_store()
        assert store.reserve_total("budget:y", 60, 100) == 60
        assert store.reserve_total("budget:y", 41, 100) is None
        assert store.total("budget:y") == 60
        assert store.reserve_total("budget:y", 40, 100) == 100

    def test_concurrent_reservations_never_overshoot(self, make_store):
        handles = [make_store("shared") for _ in range(4)]
        granted = []

        def reserve(store):
            for _ in range(30):
                if store.reserve_total("budget:z", 7, 500) is not None:
                    granted.append(7)

        threads = [threading.Thread(target=reserve, args=(store,)) for store in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(granted) == handles[0].total("budget:z") <= 500
        assert sum(granted) > 500 - 7  # and it fills up: nothing granted is lost


class LeasesContract:
    """Leases: one holder at a time across handles, released only by their holder, expiring alone."""

    def test_one_holder_at_a_time(self, make_store):
        first, second = make_store("shared"), make_store("shared")
        token = first.acquire_lease("k", 5.0)
        assert token is not None
        assert second.acquire_lease("k", 5.0) is None
        assert second.acquire_lease("other", 5.0) is not None  # leases are per name
        second.release_lease("k", "not-the-token")  # only the holder releases
        assert second.acquire_lease("k", 5.0) is None
        first.release_lease("k", token)
        assert second.acquire_lease("k", 5.0) is not None

    def test_a_lease_expires_on_its_own(self, make_store):
        store = make_store()
        old = store.acquire_lease("k", 0.05)
        assert old is not None
        deadline = time.monotonic() + 5
        new = None
        while new is None and time.monotonic() < deadline:
            time.sleep(0.02)
            new = store.acquire_lease("k", 5.0)
        assert new is not None and new != old  # a holder that died cannot block others for good
        store.release_lease("k", old)  # the old holder's late release must not free the new lease
        assert store.acquire_lease("k", 5.0) is None

    def test_concurrent_takers_get_one_lease(self, make_store):
        handles = [make_store("shared") for _ in range(8)]
        tokens = []
        barrier = threading.Barrier(len(handles))

        def take(store):
            barrier.wait()
            tokens.append(store.acquire_lease("race", 5.0))

        threads = [threading.Thread(target=take, args=(store,)) for store in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(t is not None for t in tokens) == 1


class AnswerGroupsContract:
    """Answer groups (issue 19) live in the entry: every handle reads them, updates keep them."""

    def test_an_entrys_answer_group_round_trips_and_survives_updates(self, make_store):
        store = make_store("shared")
        first = make_entry(store, "g1")
        store.put(first)
        second = make_entry(store, "g2").with_(answer_group=first.id)
        store.put(second)
        other = make_store("shared")
        assert other.get(first.id).answer_group is None
        assert other.get(second.id).answer_group == first.id
        other.update([other.get(second.id).with_(hits=3)])
        assert store.get(second.id).answer_group == first.id
        assert {e.id: e.answer_group for e in store.scan()} == {first.id: None, second.id: first.id}


class TalliesContract:
    """Tallies: per-scope integer histograms that every handle adds to and reads."""

    def test_tallies_add_per_scope_across_handles(self, make_store):
        store, other = make_store("shared"), make_store("shared")
        assert store.tallies("t|p") == {}
        store.add_tallies("t|p", {"r90": 2, "w91": 1})
        other.add_tallies("t|p", {"r90": 3, "h95": 7})
        other.add_tallies("t|q", {"r90": 1})
        store.add_tallies("t|p", {})
        assert store.tallies("t|p") == {"r90": 5, "w91": 1, "h95": 7}
        assert other.tallies("t|q") == {"r90": 1}

    def test_concurrent_tallies_never_lose_an_increment(self, make_store):
        handles = [make_store("shared") for _ in range(4)]

        def add(store):
            for _ in range(25):
                store.add_tallies("s", {"a": 1, "b": 2})

        threads = [threading.Thread(target=add, args=(h,)) for h in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handles[0].tallies("s") == {"a": 100, "b": 200}


class StoreContract(EntryStoreContract, ChangeLogContract, CounterStoreContract, LedgerContract, LeasesContract,
                    AnswerGroupsContract, TalliesContract):
    """Every seam of ``storage.protocols.Store``."""
