"""Collapse concurrent identical calls into one: the first caller runs it, the rest share its outcome.

Used for cache misses: N concurrent requests with the same exact key make one upstream call.
A key is in flight only while its call runs; the next call after it finishes runs again (this
is not a cache). Every waiter gets the same result object, or the same exception instance.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Hashable, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class _Call:
    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Run at most one call per key at a time; concurrent callers of that key share its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self._tasks: dict[tuple[int, Hashable], asyncio.Future] = {}

    def in_flight(self) -> int:
        """Return how many keys have a call running (threads and asyncio together)."""
        with self._lock:
            return len(self._calls) + len(self._tasks)

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Return ``fn()``, or the outcome of the call already running for ``key`` (threads)."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
        else:
            try:
                call.result = fn()
            except BaseException as exc:  # shared with every waiter, then re-raised here too
                call.error = exc
            finally:
                with self._lock:
                    del self._calls[key]
                call.done.set()
        if call.error is not None:
            raise call.error
        return call.result

    async def ado(self, key: Hashable, coro_fn: Callable[[], Awaitable[T]]) -> T:
        """Return ``await coro_fn()``, or the outcome of the one already running for ``key``.

        The call runs as its own task: a waiter that is cancelled (the leader included) does
        not cancel it for the others.
        """
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        with self._lock:
            task = self._tasks.get(slot)
            if task is None:
                task = self._tasks[slot] = loop.create_task(_run(coro_fn))
                task.add_done_callback(lambda done: self._forget(slot, done))
        return await asyncio.shield(task)

    def _forget(self, slot: tuple[int, Hashable], task: asyncio.Future) -> None:
        with self._lock:
            if self._tasks.get(slot) is task:
                del self._tasks[slot]
        if not task.cancelled():
            task.exception()  # mark retrieved: no "exception was never retrieved" warning


async def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    return await coro_fn()
