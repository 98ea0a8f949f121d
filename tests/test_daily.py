"""Daily limits: RPD/TPD windows (local and on Redis), a provider's daily 429 classified, never retried in a loop."""

from __future__ import annotations

import time

import httpx2
import openai
import pytest
import redis
from hypothesis import given, settings as hsettings, strategies as st

from redis_server import fresh_prefix, redis_server  # noqa: F401  (a fixture)
from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.errors import DailyLimitReached, RateLimited, UpstreamError
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server
from semcache.upstream.client import Endpoint, OpenAIUpstream
from semcache.upstream.daily import DAY, DailyLimiter, DayWindow, RedisDayWindow
from semcache.upstream.headers import daily_limit_wait
from semcache.upstream.limiter import RateLimiter
from semcache.upstream.retry import RetryPolicy
from semcache.wiring import store_from_settings

MODEL = "gpt-4o-mini"


# -- the window ---------------------------------------------------------------------------------------

def test_requests_per_day_hold_until_the_first_minute_leaves_the_day(clock):
    day = DayWindow(rpd=3, timer=clock)
    start = clock()
    assert all(day.admit(10)[0] is not None for _ in range(3))
    clock.advance(3600)
    slot, wait = day.admit(10)
    first_minute_ends = (start // 60 + 1) * 60
    assert slot is None and wait == pytest.approx(first_minute_ends + DAY - clock())
    clock.advance(wait)
    assert day.admit(10)[0] is not None


def test_tokens_per_day_count_the_real_usage_once_corrected(clock):
    day = DayWindow(tpd=1000, timer=clock)
    slot, _ = day.admit(800)  # an estimate
    assert day.admit(300)[0] is None
    day.correct(slot, 0, 150 - 800)  # the answer used 150
    assert day.admit(300)[0] is not None and day.admit(600)[0] is None


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 7200), st.integers(1, 400)), min_size=1, max_size=60))
def test_no_day_ever_holds_more_than_the_limits(steps):
    """Whatever the arrivals, any 24 hours of admissions stay within rpd and tpd (the window is only ever stricter)."""
    now = [1_000_000.0]
    day = DayWindow(rpd=20, tpd=2000, timer=lambda: now[0], window=3 * 3600)
    admitted = []
    for gap, tokens in steps:
        now[0] += gap
        if day.admit(tokens)[0] is not None:
            admitted.append((now[0], tokens))
    for at, _ in admitted:
        inside = [(t, n) for t, n in admitted if at <= t < at + 3 * 3600]
        assert len(inside) <= 20 and sum(n for _, n in inside) <= 2000


def test_past_its_max_wait_the_daily_limiter_raises_daily_limit_reached_and_spends_nothing(clock):
    minute = RateLimiter(rpm=100, timer=clock)
    limiter = DailyLimiter(minute, DayWindow(rpd=1, timer=clock), timer=clock)
    reservation = limiter.acquire(50, max_wait=10, sleep=clock.sleep)
    limiter.adjust(reservation, 20)
    with pytest.raises(DailyLimitReached) as caught:
        limiter.acquire(50, max_wait=10, sleep=clock.sleep)
    assert caught.value.retry_after > 80_000 and clock.slept == []  # told at once, no sleeping in a loop
    assert minute.wait_time(0) == 0 and len(minute._log) == 1  # the minute limiter was not charged for it


def test_a_minute_refusal_gives_the_day_slot_back(clock):
    minute = RateLimiter(rpm=1, timer=clock)
    day = DayWindow(rpd=5, timer=clock)
    limiter = DailyLimiter(minute, day, timer=clock)
    limiter.acquire(1, max_wait=1, sleep=clock.sleep)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire(1, max_wait=1, sleep=clock.sleep)
    assert not isinstance(caught.value, DailyLimitReached)
    assert day._requests == 1  # the refused request does not count toward the day


def test_the_redis_day_window_is_one_for_every_replica(redis_server):  # noqa: F811
    prefix = fresh_prefix()
    client = redis.Redis.from_url(redis_server.url)
    one = RedisDayWindow(client, "q", rpd=2, tpd=100, prefix=prefix, window=2.0, slot=1.0)
    two = RedisDayWindow(client, "q", rpd=2, tpd=100, prefix=prefix, window=2.0, slot=1.0)
    slot, _ = one.admit(40)
    assert slot is not None and two.admit(40)[0] is not None
    refused, wait = one.admit(10)
    assert refused is None and 0 < wait <= 3.0  # two requests in the window: the third waits, on every replica
    assert two.admit(10)[0] is None
    one.correct(slot, -1, -40)  # a request given back frees its part of the day
    assert two.admit(10)[0] is not None
    client.close()
    time.sleep(wait)
    assert one.admit(90)[0] is not None  # the window moved on


def test_a_route_with_tpd_on_redis_paces_every_replica(tmp_path, embedder, clock, redis_server):  # noqa: F811
    prefix = fresh_prefix()
    with running_server(create_mock()) as mock:
        caches, urls, servers = [], [], []
        for i in range(2):
            settings = Settings(cache_dir=str(tmp_path / f"r{i}"), store=redis_server.url, store_prefix=prefix, deadline=1.0,
                                routes=[{"name": "mini", "models": ["gpt-*"], "base_url": mock + "/v1", "key_env": "K",
                                         "rpd": 2}])
            cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9), timer=clock,
                                  store=store_from_settings(settings))
            server = running_server(create_app(settings, cache=cache, environ={"K": "sk-k"}))
            caches.append(cache)
            servers.append(server)
            urls.append(server.__enter__())
        try:
            answers = [httpx2.post(urls[i % 2] + "/v1/chat/completions", headers={"Authorization": "Bearer x"},
                                   json={"model": MODEL, "messages": [{"role": "user", "content": f"Question {i}?"}]})
                       for i in range(3)]
        finally:
            for server, cache in zip(servers, caches):
                server.__exit__(None, None, None)
                cache.close()
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["error"]["code"] == "daily_limit" and int(answers[2].headers["retry-after"]) > 80_000
        assert httpx2.get(mock + "/mock/stats").json()["by_model"] == {MODEL: 2}


# -- the provider's daily 429 -------------------------------------------------------------------------------

@pytest.mark.parametrize("message, wait", [
    ("Rate limit reached for gpt-4o-mini in organization org-x on tokens per day (TPD): Limit 2000000, Used 1999999, "
     "Requested 800. Please try again in 7m12s. Visit https://platform.openai.com/account/rate-limits", 432.0),
    ("Rate limit reached for o1 on requests per day (RPD): Limit 200, Used 200, Requested 1. Please try again in 1h2m3.5s.", 3723.5),
    ("Quota exceeded for quota metric GenerateRequestsPerDayPerProjectPerModel-FreeTier", 0.0),
    ("Rate limit reached on tokens per min (TPM): Please try again in 1.5s", None),
    ("", None),
])
def test_a_429_naming_a_daily_limit_is_recognised(message, wait):
    assert daily_limit_wait(message) == wait


def test_a_daily_429_is_never_retried_and_carries_the_named_wait():
    with running_server(create_mock(faults="tpd:100%:432")) as mock:
        upstream = OpenAIUpstream(Endpoint(mock + "/v1", "sk-k"), retry=RetryPolicy(max_attempts=5, deadline=30))
        with pytest.raises(DailyLimitReached) as caught:
            upstream.call({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
        upstream.close()
        assert caught.value.retry_after == 432 and isinstance(caught.value, UpstreamError)
        assert httpx2.get(mock + "/mock/stats").json()["by_status"] == {"429": 1}  # one attempt, not five


def _sidecar(tmp_path, embedder, clock, **options):
    settings = Settings(cache_dir=str(tmp_path / "c"), **options)
    cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9), timer=clock, ttl=settings.ttl)
    return cache, running_server(create_app(settings, cache=cache, environ={"A": "k", "B": "k"}))


def test_over_a_daily_limit_the_route_falls_back_or_tells_the_client_when(tmp_path, embedder, clock):
    with running_server(create_mock(faults="tpd:100%:432")) as spent, running_server(create_mock()) as backup:
        route = {"name": "a", "models": ["gpt-*"], "base_url": spent + "/v1", "key_env": "A"}
        cache, server = _sidecar(tmp_path, embedder, clock, routes=[
            {**route, "fallbacks": [{"route": "b", "model": "deepseek-chat"}]},
            {"name": "b", "models": ["deepseek-*"], "base_url": backup + "/v1", "key_env": "B"}])
        with server as url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            for text in ("First?", "Second?"):
                answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
                assert answer.model == "deepseek-chat"
        cache.close()
        assert httpx2.get(spent + "/mock/stats").json()["by_status"] == {"429": 1}  # rested after its daily 429
        (tmp_path / "c").rename(tmp_path / "old")
        cache, server = _sidecar(tmp_path, embedder, clock, routes=[route])
        with server as url:
            answer = httpx2.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer x"},
                                 json={"model": MODEL, "messages": [{"role": "user", "content": "Alone?"}]})
        cache.close()
        assert answer.status_code == 429 and answer.headers["retry-after"] == "432"


def test_over_a_daily_limit_a_stale_answer_stands_in(tmp_path, embedder, clock):
    with running_server(create_mock()) as healthy:
        cache, server = _sidecar(tmp_path, embedder, clock, upstream_base_url=healthy + "/v1", ttl=60)
        with server as url:
            first = httpx2.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer x"},
                                json={"model": MODEL, "messages": [{"role": "user", "content": "Kept?"}]})
        cache.close()
    clock.advance(120)  # expired, still kept for stale-if-error
    with running_server(create_mock(faults="tpd:100%:432")) as spent:
        cache, server = _sidecar(tmp_path, embedder, clock, upstream_base_url=spent + "/v1", ttl=60)
        with server as url:
            again = httpx2.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer x"},
                                json={"model": MODEL, "messages": [{"role": "user", "content": "Kept?"}]})
        cache.close()
    assert again.status_code == 200 and again.headers["x-semcache"] == "stale"
    assert again.json()["choices"] == first.json()["choices"]
