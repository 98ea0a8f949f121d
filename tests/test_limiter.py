import asyncio
import threading

import pytest
from hypothesis import given, settings, strategies as st

from semcache.errors import RateLimited, RequestError
from semcache.upstream.headers import RateLimitInfo
from semcache.upstream.limiter import WINDOW, RateLimiter

from conftest import Clock


def test_full_burst_then_waits_for_the_oldest_request_to_leave_the_window():
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=3, timer=clock)
    assert all(limiter.try_acquire(10) for _ in range(3))
    assert limiter.try_acquire(10) is None
    clock.now += 20
    assert limiter.wait_time(10) == pytest.approx(40.0)
    reservation = limiter.acquire(10, sleep=clock.sleep)
    assert reservation.waited == pytest.approx(40.0)
    assert clock.now == pytest.approx(1060.0)


def test_token_limit_waits_until_enough_tokens_expire():
    clock = Clock(1000.0)
    limiter = RateLimiter(tpm=1000, timer=clock)
    limiter.acquire(600)
    clock.now += 10
    limiter.acquire(300)
    assert limiter.try_acquire(200) is None  # 900 + 200 > 1000; freed once the 600 expires
    assert limiter.wait_time(200) == pytest.approx(50.0)
    assert limiter.try_acquire(100) is not None


def test_acquire_past_max_wait_raises_without_consuming():
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=1, timer=clock)
    limiter.acquire(1)
    with pytest.raises(RateLimited) as info:
        limiter.acquire(1, max_wait=5.0, sleep=clock.sleep)
    assert info.value.retry_after == pytest.approx(60.0)
    assert clock.slept == []
    clock.now += 60
    assert limiter.try_acquire(1) is not None  # the refused call took nothing


def test_adjust_refunds_tokens():
    clock = Clock(1000.0)
    limiter = RateLimiter(tpm=1000, timer=clock)
    reservation = limiter.acquire(900)
    assert limiter.try_acquire(200) is None
    limiter.adjust(reservation, 100)
    assert limiter.try_acquire(200) is not None


def test_adjust_charges_more_when_usage_exceeds_the_estimate():
    clock = Clock(1000.0)
    limiter = RateLimiter(tpm=1000, timer=clock)
    limiter.adjust(limiter.acquire(100), 950)
    assert limiter.try_acquire(100) is None


def test_observe_tightens_to_what_the_provider_says_is_left():
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=100, timer=clock)
    limiter.observe(RateLimitInfo(remaining_requests=2, reset_requests=5.0))
    assert limiter.try_acquire(1) and limiter.try_acquire(1)
    assert limiter.try_acquire(1) is None
    assert limiter.wait_time(1) == pytest.approx(5.0)
    clock.now += 5
    assert limiter.try_acquire(1) is not None


def test_observe_works_without_configured_limits():
    clock = Clock(1000.0)
    limiter = RateLimiter(timer=clock)
    limiter.observe(RateLimitInfo(remaining_tokens=50, reset_tokens=2.0))
    assert limiter.try_acquire(60) is None
    assert limiter.try_acquire(40) is not None


def test_bad_limits_and_oversized_requests_are_typed_errors():
    with pytest.raises(RequestError, match="rpm"):
        RateLimiter(rpm=0)
    with pytest.raises(RequestError, match="max_tokens"):
        RateLimiter(tpm=100).acquire(101)


def test_async_acquire_waits_with_the_given_sleep():
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=1, timer=clock)

    async def main():
        await limiter.aacquire(1)
        return await limiter.aacquire(1, sleep=clock.asleep)

    assert asyncio.run(main()).waited == pytest.approx(60.0)
    with pytest.raises(RateLimited):
        asyncio.run(limiter.aacquire(1, max_wait=1.0, sleep=clock.asleep))


def test_threads_never_overadmit():
    limiter = RateLimiter(rpm=50, tpm=5000)  # real clock: nothing expires during the test
    admitted = []

    def worker():
        for _ in range(20):
            if limiter.try_acquire(100):
                admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 50


operations = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=30, allow_nan=False),  # clock advance
        st.integers(min_value=0, max_value=400),  # tokens asked
        st.one_of(st.none(), st.integers(min_value=0, max_value=400)),  # actual usage, if adjusted
        st.one_of(st.none(), st.tuples(st.integers(0, 5), st.floats(0.1, 20))),  # provider says
    ),
    max_size=50,
)


@settings(max_examples=100, deadline=None)
@given(operations, st.integers(1, 6), st.integers(400, 1500))
def test_never_admits_more_than_the_limits_in_any_window(ops, rpm, tpm):
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=rpm, tpm=tpm, timer=clock)
    admitted = []
    for advance, tokens, actual, said in ops:
        clock.now += advance
        if said is not None:
            limiter.observe(RateLimitInfo(remaining_requests=said[0], reset_requests=said[1]))
        if tokens > tpm:
            continue
        reservation = limiter.try_acquire(tokens)
        if reservation is not None:
            if actual is not None:  # refunds only: a usage above the estimate is known too late
                limiter.adjust(reservation, min(actual, tokens))
            admitted.append(reservation)
    for last in admitted:
        # every window ending at an admission: (last.at - 60, last.at]
        inside = [r for r in admitted if last.at - WINDOW < r.at <= last.at]
        assert len(inside) <= rpm
        assert sum(r.tokens for r in inside) <= tpm


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=40))
def test_blocking_acquire_paces_a_backlog_within_the_limits(costs):
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=4, tpm=600, timer=clock)
    admitted = [limiter.acquire(c, sleep=clock.sleep) for c in costs]
    for last in admitted:
        inside = [r for r in admitted if last.at - WINDOW < r.at <= last.at]
        assert len(inside) <= 4
        assert sum(r.tokens for r in inside) <= 600
