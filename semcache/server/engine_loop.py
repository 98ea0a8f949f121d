"""A second event loop, in a thread of its own, for the engine: the server's loop only speaks HTTP.

Keying a request is CPU work on its body: ``keys.normalize`` over a 1 MB prompt takes ~90 ms on
this machine (70 ms of it collapsing whitespace), counting its tokens for the limiter ~180 ms.
Run on the server's loop, four such requests held ``/healthz`` for 1.0-1.2 s. The engine's own
``acomplete`` keys the request before its first ``await``, so moving single calls to threads
is not enough: the whole engine coroutine (keying, the upstream call and its limiter, the
store) runs here instead, and the server's loop waits on it like on any I/O.

One loop, not a pool of threads: the GIL lets one thread run Python at a time anyway, and CPU
work queued on one thread lets the server's loop take the GIL between two pieces of work
(measured with four 1 MB normalizations: in four threads they held a probing loop 225-295 ms,
one after another in one thread 68-82 ms, about one of them; on the loop itself 360-410 ms).
With four 1 MB prompts in flight, ``/healthz`` now answers within ~110 ms instead of ~1 s.
Blocking work (lookups, stores) still runs in this loop's worker threads, ``workers`` of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine, TypeVar

__all__ = ["EngineLoop"]

T = TypeVar("T")


class EngineLoop:
    """Run coroutines on a private event loop in a daemon thread: ``await engine.run(coro)`` from another loop."""

    def __init__(self, *, workers: int = 64, name: str = "semcache-engine") -> None:
        self.workers = workers
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"EngineLoop(running={self.running}, workers={self.workers})"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop's thread (once; again after ``stop``); return the loop."""
        loop = self._loop
        if loop is not None:  # every request asks: no lock once it runs
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                loop.set_default_executor(ThreadPoolExecutor(self.workers, thread_name_prefix=self.name))
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future:
        """Schedule ``coro`` on the engine loop; return its thread-safe future (cancelling it cancels the task)."""
        return asyncio.run_coroutine_threadsafe(coro, self.start())

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the engine loop; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(self.submit(coro))

    def call_back(self, loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
        """Call ``fn(*args)`` on ``loop`` (the server's), from the engine loop: the only safe way to touch its objects."""
        loop.call_soon_threadsafe(fn, *args)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every task on the engine loop (stores in flight); return how many remain."""
        if self._loop is None:
            return 0

        async def wait() -> int:
            current = asyncio.current_task()
            pending = {t for t in asyncio.all_tasks() if t is not current}
            if pending:
                _, pending = await asyncio.wait(pending, timeout=timeout)
            return len(pending)

        return await self.run(wait())

    async def stop(self) -> None:
        """Stop the loop after its worker threads finish; join the thread (off the caller's loop)."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        await asyncio.to_thread(thread.join)
        loop.close()
