import asyncio
import threading

import pytest

from semcache.engine.singleflight import SingleFlight


def test_fifty_threads_one_call_fifty_answers():
    flight = SingleFlight()
    calls, entered, answers = [], [], []
    all_in = threading.Event()

    def fn():
        calls.append(1)
        all_in.wait(5)
        # the last thread has announced itself; give it the instant it needs to join the call
        threading.Event().wait(0.05)
        return {"answer": 42}

    def worker():
        entered.append(1)
        if len(entered) == 50:
            all_in.set()
        answers.append(flight.do("key", fn))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(answers) == 50 and all(a is answers[0] for a in answers)
    assert flight.in_flight() == 0


def test_exception_is_shared_and_key_is_released():
    flight = SingleFlight()
    with pytest.raises(ValueError):
        flight.do("k", lambda: (_ for _ in ()).throw(ValueError("boom")))
    assert flight.do("k", lambda: 1) == 1  # not cached: runs again


def test_fifty_tasks_one_call_fifty_answers():
    flight = SingleFlight()
    calls = []

    async def fetch():
        calls.append(1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "answer"

    async def main():
        return await asyncio.gather(*(flight.ado("key", fetch) for _ in range(50)))

    assert asyncio.run(main()) == ["answer"] * 50
    assert len(calls) == 1


def test_async_exception_reaches_every_waiter_and_other_keys_run_apart():
    flight = SingleFlight()
    calls = []

    async def fail():
        calls.append("fail")
        await asyncio.sleep(0)
        raise KeyError("gone")

    async def ok():
        calls.append("ok")
        return 7

    async def main():
        return await asyncio.gather(*(flight.ado("a", fail) for _ in range(5)), flight.ado("b", ok), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, KeyError) for r in results[:5]) and results[5] == 7
    assert sorted(calls) == ["fail", "ok"]


def test_a_cancelled_waiter_does_not_cancel_the_call_for_others():
    flight = SingleFlight()

    async def slow():
        await asyncio.sleep(0.01)
        return "done"

    async def main():
        first = asyncio.ensure_future(flight.ado("k", slow))
        second = asyncio.ensure_future(flight.ado("k", slow))
        await asyncio.sleep(0)
        first.cancel()
        return await second, first.cancelled()

    assert asyncio.run(main()) == ("done", True)
