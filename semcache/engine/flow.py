"""Run a request's path once for sync and async: a plan yields steps, a driver executes them.

The engine writes ``complete`` as one generator (look up, then on a miss: in a single flight,
check for an answer that just landed, fetch, store; on an upstream failure: stale or raise).
``run`` executes its steps inline; ``arun`` awaits the fetch and runs blocking work in worker
threads, so the event loop never waits on the model, the index or the disk. Exceptions of a
step are thrown back into the plan, which decides (the same shape as ``upstream.client``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generator, Hashable

from .singleflight import SingleFlight

__all__ = ["Fetch", "Flight", "Work", "arun", "run"]

Plan = Generator[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Work:
    """Blocking work (lookup, store): inline when sync, in a worker thread when async."""

    fn: Callable[..., Any]
    args: tuple = ()


@dataclass(frozen=True, slots=True)
class Fetch:
    """Get the answer from the caller's function or the upstream."""

    request: Any


@dataclass(frozen=True, slots=True)
class Flight:
    """Run ``plan()`` once among concurrent callers of ``key`` (``None``: alone); sends back
    ``(value, shared)``, ``shared`` meaning another caller's run produced the value."""

    key: Hashable | None
    plan: Callable[[], Plan]


def run(plan: Plan, fetch: Callable[[Any], Any], flights: SingleFlight) -> Any:
    """Execute ``plan`` in this thread; return its value."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(value)
        except StopIteration as done:
            return done.value
        value, error = None, None
        try:
            if isinstance(step, Work):
                value = step.fn(*step.args)
            elif isinstance(step, Fetch):
                value = fetch(step.request)
            elif step.key is None:
                value = run(step.plan(), fetch, flights), False
            else:
                led = []

                def lead(sub=step.plan) -> Any:
                    led.append(True)
                    return run(sub(), fetch, flights)

                value = flights.do(step.key, lead), not led
        except BaseException as exc:  # handed to the plan, which decides (and cleans up on the way out)
            error = exc


async def arun(plan: Plan, fetch: Callable[[Any], Awaitable[Any]], flights: SingleFlight) -> Any:
    """Execute ``plan`` on the event loop: blocking work in worker threads; return its value."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(value)
        except StopIteration as done:
            return done.value
        value, error = None, None
        try:
            if isinstance(step, Work):
                value = await asyncio.to_thread(step.fn, *step.args)
            elif isinstance(step, Fetch):
                value = await fetch(step.request)
            elif step.key is None:
                value = await arun(step.plan(), fetch, flights), False
            else:
                led = []

                async def lead(sub=step.plan) -> Any:
                    led.append(True)
                    return await arun(sub(), fetch, flights)

                value = await flights.ado(step.key, lead), not led
        except BaseException as exc:  # cancellation too: the plan releases what it holds
            error = exc
