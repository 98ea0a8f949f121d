"""The mirror: one process's view of the store, read by many worker threads while others sync it."""

from __future__ import annotations

import threading
import time

import numpy as np

from contracts import make_entry
from semcache.storage.disk import DiskStore
from semcache.storage.mirror import Mirror


def test_readers_never_see_the_entry_table_change_under_them(tmp_path):
    """expired / least_recently_used / in_partition iterate the metadata while sync() adds to it
    (the sidecar's 64 worker threads): they must hold the lock, or iteration raises mid-way."""
    writer_store, reader_store = DiskStore(str(tmp_path / "c")), DiskStore(str(tmp_path / "c"))
    mirror = Mirror(reader_store, 4)
    failures: list[BaseException] = []
    stop = threading.Event()

    def write():
        i = 0
        while not stop.is_set():
            vector = np.ones(4, np.float32) / 2
            writer_store.put(make_entry(writer_store, f"k{i}", partition=f"p{i % 3}").with_(embedding=vector))
            mirror.sync()
            i += 1

    def read():
        try:
            while not stop.is_set():
                mirror.expired(time.time() + 1e6)
                mirror.least_recently_used(keep_entries=0, keep_bytes=None)
                mirror.in_partition("p1")
        except BaseException as exc:  # noqa: BLE001 -- the test's point
            failures.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not failures, failures[0]
    assert len(mirror) > 20
    assert set(mirror.in_partition("p1")) == {e.id for e in reader_store.scan() if e.partition == "p1"}
    writer_store.close()
    reader_store.close()
