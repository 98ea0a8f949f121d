import asyncio
import threading

import pytest
from hypothesis import example, given, settings, strategies as st

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


def test_a_late_adjust_of_a_reservation_already_out_of_the_window_frees_nothing():
    """Settling a reservation another call has pruned must not drive the token sum negative."""
    clock = Clock(1000.0)
    limiter = RateLimiter(tpm=1000, timer=clock)
    slow = limiter.acquire(600)  # a call that takes longer than the window
    clock.now += 61
    assert limiter.try_acquire(100) is not None  # prunes the slow call's entry
    limiter.adjust(slow, 0)  # ... which then settles at 0 tokens
    admitted = 100
    while limiter.try_acquire(100) is not None:
        admitted += 100
    assert admitted == 1000
    assert slow.tokens == 0 and not slow.counted


def test_a_late_increase_after_the_window_charges_nothing_now():
    clock = Clock(1000.0)
    limiter = RateLimiter(tpm=1000, timer=clock)
    stream = limiter.acquire(100)
    clock.now += 61
    assert limiter.try_acquire(1) is not None
    limiter.adjust(stream, 900)  # its minute is over: the provider counted it back then
    assert limiter.try_acquire(999) is not None


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
    st.one_of(
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=30, allow_nan=False)),
        st.tuples(st.just("wait"), st.floats(min_value=30, max_value=200, allow_nan=False)),  # longer than the window
        st.tuples(st.just("try"), st.integers(min_value=0, max_value=400)),
        st.tuples(st.just("acquire"), st.integers(min_value=0, max_value=400)),  # blocks on the clock
        # settle any earlier admission, however late: a refund, or more than its estimate
        st.tuples(st.just("adjust"), st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=800)),
        st.tuples(st.just("observe"), st.integers(0, 5), st.floats(0.1, 20)),  # the provider says what is left
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.integers(1, 20), st.integers(400, 1500))
# The case: a slow call is pruned by a later one, then settled at 0 tokens.
@example([("try", 400), ("wait", 61.0), ("try", 0), ("adjust", 0, 0), ("try", 400), ("try", 400)], 6, 400)
def test_never_admits_more_than_the_limits_in_any_window_whenever_reservations_are_settled(ops, rpm, tpm):
    """Whatever is adjusted when (late, after pruning, up or down), each admission fits its window.

    A usage above the estimate is known only after admission, so the rule checked is the one a
    limiter can keep: at every admission, the requests and tokens known in the 60 seconds up to
    it (the new one included) are within rpm and tpm; and the tracked sum is the log's sum.
    """
    clock = Clock(1000.0)
    limiter = RateLimiter(rpm=rpm, tpm=tpm, timer=clock)
    admitted = []

    def check_admission(reservation):
        admitted.append(reservation)
        now = reservation.at
        inside = [r for r in admitted if not r.at + WINDOW <= now]  # the limiter's own window test
        assert len(inside) <= rpm
        assert sum(r.tokens for r in inside) <= tpm

    for op in ops:
        if op[0] == "wait":
            clock.now += op[1]
        elif op[0] == "observe":
            limiter.observe(RateLimitInfo(remaining_requests=op[1], reset_requests=op[2]))
        elif op[0] == "adjust":
            if admitted:
                limiter.adjust(admitted[op[1] % len(admitted)], op[2])
        elif op[1] <= tpm:
            reservation = limiter.try_acquire(op[1]) if op[0] == "try" else limiter.acquire(op[1], sleep=clock.sleep)
            if reservation is not None:
                check_admission(reservation)
        assert limiter._tokens == sum(r.tokens for r in limiter._log)
        assert all(r.counted for r in limiter._log) and sum(r.counted for r in admitted) == len(limiter._log)


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
