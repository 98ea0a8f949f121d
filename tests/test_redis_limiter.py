"""RedisRateLimiter against a real redis-server: several limiters on one Redis (several
replicas) never admit more than one quota in any window, by Redis's clock; tokens corrected
late; the provider's ceilings shared; failing closed, or a local share, while Redis is away."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from redis_server import fresh_prefix, redis_server, start_redis  # noqa: F401  (fixtures)
from semcache.errors import ConfigError, RateLimited, RequestError
from semcache.upstream.headers import RateLimitInfo
from semcache.upstream.redis_limiter import RedisRateLimiter

pytestmark = pytest.mark.server


@pytest.fixture
def make_limiter(redis_server):  # noqa: F811
    """Limiters on the module's server, each with its own connection pool (as a replica has);
    one call's limiters share a quota name no other test uses."""
    name = fresh_prefix()
    made = []

    def make(rpm=None, tpm=None, url=None, **options) -> RedisRateLimiter:
        limiter = RedisRateLimiter.from_url(url or redis_server.url, name, rpm, tpm, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.client.close()


def _micros(reservation) -> int:
    return round(reservation.at * 1_000_000)  # Redis TIME in µs, exact through the float


def assert_within(admitted, window: float, rpm: int | None, tpm: int | None) -> None:
    """Every window ending at an admission, (at - window, at], holds at most rpm requests and tpm tokens."""
    width = round(window * 1_000_000)
    times = sorted((_micros(r), r.tokens) for r in admitted)
    for end, _ in times:
        inside = [tokens for at, tokens in times if end - width < at <= end]
        if rpm is not None:
            assert len(inside) <= rpm, f"{len(inside)} requests in one window"
        if tpm is not None:
            assert sum(inside) <= tpm, f"{sum(inside)} tokens in one window"


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [2, 3])
def test_replicas_under_a_burst_never_admit_more_than_one_quota_in_any_window(make_limiter, replicas):
    window, rpm, tpm = 1.0, 12, 2_400
    limiters = [make_limiter(rpm, tpm, window=window) for _ in range(replicas)]
    admitted, lock = [], threading.Lock()
    stop = time.monotonic() + 2.3

    def burst(limiter, seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            reservation = limiter.acquire(rng.randint(20, 300), max_wait=5.0)
            with lock:
                admitted.append(reservation)

    threads = [threading.Thread(target=burst, args=(limiter, n * 10 + t)) for n, limiter in enumerate(limiters) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert_within(admitted, window, rpm, tpm)
    assert len(admitted) >= 2 * rpm  # paced at the quota, not far under it: two windows' worth, at least
    # what the replicas were told is what Redis recorded, by its own clock
    recorded = limiters[0].client.zrange(limiters[0]._keys[0], 0, -1, withscores=True)
    by_seq = {int(member): int(score) for member, score in recorded}
    assert by_seq and all(by_seq[r.seq] == _micros(r) for r in admitted if r.seq in by_seq)


def test_a_late_adjust_refunds_or_charges_the_shared_window(make_limiter):
    first, second = make_limiter(tpm=1000, window=30), make_limiter(tpm=1000, window=30)
    reservation = first.acquire(900)
    assert second.try_acquire(200) is None
    first.adjust(reservation, 100)  # the answer used less than the estimate
    assert reservation.tokens == 100
    assert second.try_acquire(200) is not None  # 300 of 1000 used
    first.adjust(reservation, 750)  # or more
    assert second.try_acquire(100) is None  # 950 + 100 > 1000
    assert 29 < second.wait_time(100) <= 30.001  # until the first admission leaves the window


def test_an_adjust_after_the_window_is_left_alone_and_no_sum_goes_negative(make_limiter):
    first, second = make_limiter(tpm=1000, window=0.3), make_limiter(tpm=1000, window=0.3)
    old = first.acquire(1000)
    time.sleep(0.35)
    first.adjust(old, 0)  # it no longer counts anywhere: a refund now would free tokens it never held
    fresh = second.try_acquire(1000)
    assert fresh is not None
    assert first.try_acquire(1) is None  # the window is full: the late refund freed nothing
    state = first.client.hgetall(first._keys[2])
    assert int(state[b"tokens"]) == 1000
    second.adjust(fresh, 0)
    assert int(first.client.hget(first._keys[2], "tokens")) == 0 and first.try_acquire(1000) is not None


def test_the_providers_ceilings_are_shared_by_every_replica(make_limiter):
    first, second = make_limiter(rpm=100, window=10), make_limiter(rpm=100, window=10)
    first.observe(RateLimitInfo(remaining_requests=2, reset_requests=1.0))  # headers seen by one replica
    assert second.try_acquire(1) and first.try_acquire(1)
    assert second.try_acquire(1) is None and first.try_acquire(1) is None
    wait = second.wait_time(1)
    assert 0.5 < wait <= 1.001
    time.sleep(wait)
    assert second.try_acquire(1) is not None  # the ceiling reset with the provider's count


def test_a_token_ceiling_counts_corrected_tokens(make_limiter):
    first, second = make_limiter(window=10), make_limiter(window=10)
    first.observe(RateLimitInfo(remaining_tokens=100, reset_tokens=5.0))
    assert second.try_acquire(150) is None
    big = second.try_acquire(90)
    assert big is not None and first.try_acquire(30) is None
    second.adjust(big, 40)  # the ceiling counts what was used: 40 of 100
    assert first.try_acquire(30) is not None and first.try_acquire(40) is None


def test_max_wait_refuses_at_once_without_consuming(make_limiter):
    limiter = make_limiter(rpm=1, window=5)
    limiter.acquire(1)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        limiter.acquire(1, max_wait=0.5)
    assert time.monotonic() - started < 0.5
    assert caught.value.code == "local_rate_limit" and 4.5 < caught.value.retry_after <= 5.001
    assert limiter.client.zcard(limiter._keys[0]) == 1  # the refused request took nothing


def test_async_acquire_waits_for_the_shared_window(make_limiter):
    limiter = make_limiter(rpm=2, window=0.5)

    async def main():
        return [await limiter.aacquire(10) for _ in range(3)]

    first, second, third = asyncio.run(main())
    assert first.waited < 0.1 and second.waited < 0.1
    assert 0.4 <= third.waited < 1.0
    assert_within([first, second, third], 0.5, 2, None)


def test_bad_limits_names_shares_and_oversized_requests_are_typed_errors(make_limiter, redis_server):  # noqa: F811
    with pytest.raises(RequestError, match="rpm"):
        make_limiter(rpm=0)
    for options in ({"local_share": 1.5}, {"window": 0}):
        with pytest.raises(ConfigError):
            make_limiter(rpm=1, **options)
    with pytest.raises(ConfigError, match="name"):
        RedisRateLimiter.from_url(redis_server.url, "", 1)
    with pytest.raises(RequestError, match="max_tokens"):
        make_limiter(tpm=100).acquire(101)


def test_keys_are_the_name_under_the_prefix_and_the_url_is_redacted(start_redis):  # noqa: F811
    server = start_redis(password="l1m1t-pw")
    limiter = RedisRateLimiter.from_url(server.url, "sha256-of-key", 5, prefix="cache-a")
    limiter.acquire(7)
    limiter.observe(RateLimitInfo(remaining_requests=3, reset_requests=9.0))
    keys = {k.decode() for k in limiter.client.scan_iter(match="*")}
    assert keys == {f"cache-a:rl:sha256-of-key:{k}" for k in ("log", "tok", "state", "ceil:requests")}
    assert "l1m1t-pw" not in repr(limiter) and "***@" in repr(limiter)
    limiter.client.close()


# -- Redis out of reach --------------------------------------------------------------------

def test_without_redis_it_fails_closed_and_recovers(start_redis, caplog):  # noqa: F811
    server = start_redis(password="cl0sed-pw")
    limiter = RedisRateLimiter.from_url(server.url, "q", 10, 1000, window=5, probe_interval=0.2, timeout=1.0)
    reservation = limiter.acquire(100)
    server.stop()
    with caplog.at_level(logging.INFO, logger="semcache"):
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(RateLimited) as caught:
                limiter.acquire(100)
            assert time.monotonic() - started < 2
            assert caught.value.code == "limiter_unavailable" and caught.value.retry_after == 1.0
        assert limiter.try_acquire(100) is None and limiter.wait_time(100) == 1.0
        limiter.adjust(reservation, 50)  # after an answer: never raises
        limiter.observe(RateLimitInfo(remaining_requests=1, reset_requests=1.0))
        server.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                back = limiter.acquire(100)
                break
            except RateLimited:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert back.seq > 0  # admitted by Redis again
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot reach Redis" in m and "failing closed" in m for m in messages) == 1  # once per outage
    assert sum("reaches Redis" in m for m in messages) == 1
    assert all("cl0sed-pw" not in m for m in messages)
    limiter.client.close()


def test_with_a_local_share_it_paces_under_its_part_of_the_quota_until_redis_is_back(start_redis, caplog):  # noqa: F811
    server = start_redis()
    limiter = RedisRateLimiter.from_url(server.url, "q", 10, 1000, window=5, local_share=0.5, probe_interval=0.2, timeout=1.0)
    limiter.acquire(10)
    server.stop()
    with caplog.at_level(logging.WARNING, logger="semcache"):
        big = limiter.try_acquire(400)  # the share: 5 requests, 500 tokens, whatever Redis had admitted
        assert big is not None and limiter.try_acquire(200) is None
        limiter.adjust(big, 100)  # a local admission is corrected locally
        assert limiter.try_acquire(200) is not None
        assert [limiter.try_acquire(10) is not None for _ in range(4)] == [True, True, True, False]
    with pytest.raises(RateLimited) as caught:
        limiter.acquire(10, max_wait=0.1)
    assert caught.value.code == "local_rate_limit"
    with pytest.raises(RateLimited) as caught:
        limiter.acquire(600)  # fits the quota (1000), never the share (500): wait for Redis
    assert caught.value.code == "limiter_unavailable"
    assert sum("local share of 0.5" in r.getMessage() for r in caplog.records) == 1
    server.start()
    time.sleep(0.25)  # past the probe interval
    again = limiter.try_acquire(10)
    assert again is not None and limiter.client.zcard(limiter._keys[0]) == 1  # in Redis (the old log died with it)
    limiter.client.close()


# -- the rule, for any sequence ------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.02, 0.06]),  # real time passing: Redis's clock cannot be advanced by hand
        st.integers(min_value=0, max_value=400),  # tokens asked
        st.one_of(st.none(), st.integers(min_value=0, max_value=400)),  # actual usage, if adjusted
    ),
    max_size=10,
)


@settings(max_examples=25, deadline=None)
@given(operations, st.integers(1, 4), st.integers(400, 1000))
def test_never_admits_more_than_the_limits_in_any_window(redis_server, ops, rpm, tpm):  # noqa: F811
    window = 0.15
    name = fresh_prefix()
    limiters = [RedisRateLimiter.from_url(redis_server.url, name, rpm, tpm, window=window) for _ in range(2)]
    admitted = []
    try:
        for n, (pause, tokens, actual) in enumerate(ops):
            time.sleep(pause)
            if tokens > tpm:
                continue
            limiter = limiters[n % 2]
            reservation = limiter.try_acquire(tokens)
            if reservation is not None:
                if actual is not None:  # refunds only: a usage above the estimate is known too late
                    limiters[(n + 1) % 2].adjust(reservation, min(actual, tokens))
                admitted.append(reservation)
    finally:
        for limiter in limiters:
            limiter.client.close()
    assert_within(admitted, window, rpm, tpm)
