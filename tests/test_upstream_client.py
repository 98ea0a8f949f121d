import asyncio
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from semcache.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    QuotaExhausted,
    RateLimited,
    StoreError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
)
from semcache.stats import Stats
from semcache.upstream.budget import BudgetGuard
from semcache.upstream.client import Endpoint, FunctionUpstream, OpenAIUpstream, UpstreamResponse
from semcache.upstream.pricing import Pricing
from semcache.upstream.retry import RetryPolicy
from semcache.upstream.tokens import estimate_request_tokens

from conftest import Clock

KEY = "sk-test-secret-123"


def chat_body(request, content="hello"):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        "provider_extra": {"echo": request.get("custom_field")},
    }


def error(status, code, message="nope", headers=None):
    return httpx2.Response(status, json={"error": {"message": message, "type": code, "code": code}}, headers=headers or {})


class Provider:
    """An honest fake provider: answers from a script of responses, then with a chat body."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        if self.script:
            step = self.script.pop(0)
            answer = step(request, body) if callable(step) else step
            if answer is not None:
                return answer
        return httpx2.Response(200, json=chat_body(body), headers={"x-ratelimit-remaining-requests": "99", "x-ratelimit-reset-requests": "600ms"})


def make(provider, *, endpoints=None, clock=None, **kwargs):
    clock = clock or Clock(1000.0)
    kwargs.setdefault("retry", RetryPolicy(rng=random.Random(0)))
    return OpenAIUpstream(
        endpoints or [Endpoint("http://up.test/v1", KEY, name="primary")],
        timer=clock,
        sleep=clock.sleep,
        async_sleep=clock.asleep,
        http_client=httpx2.Client(transport=httpx2.MockTransport(provider)),
        **kwargs,
    )


REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "custom_field": [1, {"x": None}]}


def test_call_returns_the_provider_body_and_passes_unknown_fields_through():
    provider, stats = Provider(), Stats()
    upstream = make(provider, stats=stats)
    answer = upstream.call(REQUEST, tenant="t1")
    assert json.loads(provider.requests[0].content) == REQUEST
    assert provider.requests[0].url.path == "/v1/chat/completions"
    assert answer.body["provider_extra"] == {"echo": [1, {"x": None}]}
    assert (answer.model, answer.prompt_tokens, answer.completion_tokens, answer.attempts, answer.endpoint) == ("gpt-4o-mini", 11, 5, 1, "primary")
    assert answer.headers.remaining_requests == 99 and answer.headers.reset_requests == 0.6
    totals = stats.snapshot()["by_tenant"]["t1"]
    assert (totals["upstream_calls"], totals["upstream_attempts"], totals["upstream_prompt_tokens"], totals["upstream_completion_tokens"]) == (1, 1, 11, 5)
    assert totals["cost_spent_usd"] > 0
    assert KEY not in repr(upstream) and KEY not in repr(upstream.endpoints[0]) and KEY not in repr(answer)


def test_429_is_retried_after_retry_after_ms():
    clock, stats = Clock(1000.0), Stats()
    provider = Provider([error(429, "rate_limit_exceeded", headers={"retry-after-ms": "250"}), error(429, "rate_limit_exceeded", headers={"retry-after": "2"})])
    answer = make(provider, clock=clock, stats=stats).call(REQUEST)
    assert answer.attempts == 3 and clock.slept == [0.25, 2.0] and answer.waited_s == pytest.approx(2.25)
    total = stats.snapshot()["total"]
    assert (total["rate_limited_429"], total["retries"], total["upstream_attempts"], total["upstream_calls"]) == (2, 2, 3, 1)


@pytest.mark.parametrize("status, code", [(429, "insufficient_quota"), (429, "billing_hard_limit_reached"), (402, "payment_required")])
def test_quota_errors_are_typed_and_never_retried(status, code):
    provider, stats = Provider([error(status, code)] * 5), Stats()
    with pytest.raises(QuotaExhausted):
        make(provider, stats=stats).call(REQUEST)
    assert len(provider.requests) == 1
    total = stats.snapshot()["total"]
    assert total["errors.QuotaExhausted"] == 1
    assert (total["quota_exhausted"], total["rate_limited_429"]) == (1, 0)  # a billing refusal is not a rate limit


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_typed(status):
    provider = Provider([error(status, "invalid_api_key")] * 3)
    with pytest.raises(AuthenticationFailed) as info:
        make(provider).call(REQUEST)
    assert info.value.status_code == status and len(provider.requests) == 1 and KEY not in str(info.value)


def test_persistent_5xx_stops_after_max_attempts():
    provider = Provider([error(503, "overloaded")] * 10)
    with pytest.raises(UpstreamStatusError) as info:
        make(provider, retry=RetryPolicy(max_attempts=3, rng=random.Random(0))).call(REQUEST)
    assert info.value.status_code == 503 and len(provider.requests) == 3


def test_x_should_retry_false_stops_retries():
    provider = Provider([error(500, "server_error", headers={"x-should-retry": "false"})] * 3)
    with pytest.raises(UpstreamStatusError):
        make(provider).call(REQUEST)
    assert len(provider.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx2.Response(200, content=b"{not json", headers={"content-type": "application/json"}),
        httpx2.Response(200, json={"id": "x", "object": "chat.completion"}),
        httpx2.Response(200, json=["a", "list"]),
    ],
)
def test_a_body_that_is_not_a_valid_answer_is_a_status_error(answer):
    with pytest.raises(UpstreamStatusError) as info:
        make(Provider([answer])).call(REQUEST)
    assert info.value.code in {"invalid_json", "invalid_response_body"}


def test_failover_to_the_next_endpoint_and_cool_down_the_broken_one():
    def provider(request):
        if request.url.host == "down.test":
            raise httpx2.ConnectError("refused", request=request)
        return Provider()(request)

    seen = []
    clock = Clock(1000.0)
    upstream = make(
        lambda r: seen.append(r.url.host) or provider(r),
        endpoints=[Endpoint("http://down.test/v1", "k1", name="a"), Endpoint("http://ok.test/v1", "k2", name="b", model_map={"gpt-4o-mini": "deployment-7"})],
        clock=clock,
        retry=RetryPolicy(max_attempts=2, rng=random.Random(0)),
        cooldown=30.0,
    )
    first = upstream.call(REQUEST)
    assert first.endpoint == "b" and first.body["model"] == "deployment-7" and first.model == "gpt-4o-mini"
    assert seen == ["down.test", "down.test", "ok.test"]
    upstream.call(REQUEST)
    assert seen[3:] == ["ok.test"]  # a is cooling down
    clock.now += 31
    upstream.call(REQUEST)
    assert seen[4:] == ["down.test", "down.test", "ok.test"]


def test_all_endpoints_down_raises_connection_error():
    def provider(request):
        raise httpx2.ConnectError("refused", request=request)

    with pytest.raises(UpstreamConnectionError):
        make(provider, retry=RetryPolicy(max_attempts=2, rng=random.Random(0))).call(REQUEST)


def test_fallback_model_answers_when_the_requested_model_is_not_found():
    def not_found(request, body):
        return error(404, "model_not_found") if body["model"] == "gpt-5-huge" else None

    provider = Provider([not_found, not_found])
    answer = make(provider, fallback_models=["gpt-4o-mini"]).call({**REQUEST, "model": "gpt-5-huge"})
    assert answer.model == "gpt-4o-mini" and answer.body["model"] == "gpt-4o-mini"
    assert [json.loads(r.content)["model"] for r in provider.requests] == ["gpt-5-huge", "gpt-4o-mini"]


def test_bad_request_is_not_retried_nor_falls_back():
    provider = Provider([error(400, "invalid_request_error")] * 3)
    with pytest.raises(UpstreamStatusError) as info:
        make(provider, fallback_models=["gpt-4o"]).call(REQUEST)
    assert info.value.status_code == 400 and len(provider.requests) == 1


def estimate(request=REQUEST):
    """What a call reserves: the prompt estimate plus its max_tokens."""
    prompt, completion = estimate_request_tokens(request, 256)
    return prompt + completion


def test_budget_stop_makes_no_request():
    provider = Provider()
    reserve = estimate()  # each answer then uses 16
    budget = BudgetGuard(tokens_per_day=2 * 16 + reserve, timer=lambda: 1_700_000_000.0)
    upstream = make(provider, budget=budget)
    upstream.call(REQUEST)
    upstream.call(REQUEST)
    upstream.call(REQUEST)  # 32 spent: the third reservation fits exactly
    with pytest.raises(BudgetExceeded):
        upstream.call(REQUEST)  # 48 spent: another reservation does not fit
    assert len(provider.requests) == 3 and budget.state()["tokens_per_day"]["spent"] == 48


def test_local_limiter_raises_rate_limited_instead_of_waiting_past_the_deadline():
    provider = Provider()
    upstream = make(provider, rpm=1, retry=RetryPolicy(deadline=5.0))
    upstream.call(REQUEST)
    with pytest.raises(RateLimited) as info:
        upstream.call(REQUEST)
    assert info.value.retry_after == pytest.approx(60.0, abs=0.01) and len(provider.requests) == 1


def test_limiter_paces_calls_with_the_injected_clock():
    clock = Clock(1000.0)
    upstream = make(Provider(), clock=clock, rpm=2, retry=RetryPolicy(deadline=120.0))
    waits = [upstream.call(REQUEST).waited_s for _ in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] == pytest.approx(60.0, abs=0.01)


def test_acall_over_an_async_client():
    provider = Provider([error(500, "server_error")])
    clock = Clock(1000.0)
    upstream = OpenAIUpstream(
        Endpoint("http://up.test/v1", KEY),
        timer=clock,
        async_sleep=clock.asleep,
        retry=RetryPolicy(rng=random.Random(0)),
        async_http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(provider)),
    )
    answer = asyncio.run(upstream.acall(REQUEST))
    assert answer.attempts == 2 and answer.endpoint == "up.test" and answer.body["choices"][0]["message"]["content"] == "hello"
    assert len(clock.slept) == 1


def sse(*events):
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


CHUNKS = [
    {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hel"}}]},
    {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
    {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}},
]


def streaming(request, body):
    assert body["stream"] is True
    return httpx2.Response(200, content=sse(*CHUNKS), headers={"content-type": "text/event-stream"})


def test_stream_yields_chunks_after_retries_and_counts_final_usage():
    stats = Stats()
    provider = Provider([error(429, "rate_limit_exceeded", headers={"retry-after-ms": "10"}), streaming])
    upstream = make(provider, stats=stats)
    assert list(upstream.stream(REQUEST)) == CHUNKS
    total = stats.snapshot()["total"]
    assert (total["upstream_calls"], total["upstream_prompt_tokens"], total["upstream_completion_tokens"], total["retries"]) == (1, 9, 2, 1)


def test_astream_yields_chunks():
    provider = Provider([streaming])
    upstream = OpenAIUpstream(Endpoint("http://up.test/v1", KEY), async_http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(provider)))

    async def main():
        return [chunk async for chunk in upstream.astream(REQUEST)]

    assert asyncio.run(main()) == CHUNKS


def test_stream_error_before_first_chunk_is_typed():
    with pytest.raises(QuotaExhausted):
        next(iter(make(Provider([error(429, "insufficient_quota")])).stream(REQUEST)))


def test_function_upstream_counts_calls_and_reads_usage():
    fake = FunctionUpstream(lambda request, kind: chat_body(request, content=kind))
    answer = fake.call(REQUEST)
    assert isinstance(answer, UpstreamResponse) and answer.body["choices"][0]["message"]["content"] == "chat"
    assert (answer.prompt_tokens, answer.completion_tokens) == (11, 5)

    async def handler(request, kind):
        return chat_body(request)

    assert asyncio.run(FunctionUpstream(handler).acall(REQUEST, kind="completions")).model == "gpt-4o-mini"
    assert fake.calls == 1


@pytest.mark.server
def test_against_the_mock_server_with_faults_every_request_is_answered():
    from servers import running_server

    from semcache.testing.mock import create_app

    clock = Clock(1000.0)  # retry waits are recorded, not slept: the faults are drawn, not timed
    stats = Stats()
    with running_server(create_app(faults="429:30%,500:5%", seed=7)) as url:
        upstream = OpenAIUpstream(
            Endpoint(f"{url}/v1", "sk-mock", name="mock"),
            retry=RetryPolicy(max_attempts=8, deadline=600.0, rng=random.Random(0)),
            stats=stats,
            timer=clock,
            sleep=clock.sleep,
        )
        with upstream:
            answers = [upstream.call({**REQUEST, "messages": [{"role": "user", "content": f"question {i}"}]}) for i in range(25)]
            streamed = list(upstream.stream({**REQUEST, "stream_options": {"include_usage": True}}))
        mock_stats = httpx2.get(f"{url}/mock/stats").json()
    assert all(a.body["choices"][0]["message"]["content"] for a in answers)
    assert all(1 <= a.attempts <= 8 for a in answers) and any(a.attempts > 1 for a in answers)
    assert streamed and streamed[-1].get("usage")
    total = stats.snapshot()["total"]
    assert total["upstream_calls"] == 26
    assert total["upstream_attempts"] == 26 + total["retries"]
    assert total["rate_limited_429"] >= 1 and total["upstream_prompt_tokens"] > 0
    assert 1.0 in clock.slept  # the mock's retry-after was honoured
    assert isinstance(mock_stats, dict)


@pytest.mark.parametrize("stated_cap", [True, False])
def test_a_stated_max_tokens_stays_counted_against_tpm_after_a_shorter_answer(stated_cap):
    """Providers count prompt + max_tokens when they admit a request; only a guessed reserve is refunded."""
    from semcache.upstream.tokens import estimate_request_tokens

    request = REQUEST if stated_cap else {k: v for k, v in REQUEST.items() if k != "max_tokens"}
    prompt, completion = estimate_request_tokens(request, 256)
    reserved = prompt + completion
    assert reserved > 16 + 1  # the answer's usage (16 tokens) is well under the reservation
    upstream = make(Provider(), tpm=2 * reserved - 1, retry=RetryPolicy(deadline=120.0))
    upstream.call(request)
    second = upstream.call(request)
    # Counted at its cap, the first call leaves no room for a second in the same minute;
    # refunded to its usage (no cap was stated), it does.
    assert second.waited_s == (pytest.approx(60.0, abs=0.01) if stated_cap else 0.0)


# -- budget: reserve before the call, settle after it --------------------------------------------

DAY = 1_700_000_000.0


class GatedProvider(Provider):
    """A provider that holds every request until ``opened`` is set, so calls are in flight together."""

    def __init__(self, script=()):
        super().__init__(script)
        self.arrived = 0
        self.opened = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, request):
        with self._lock:
            self.arrived += 1
        assert self.opened.wait(10)
        return super().__call__(request)


def race(call, n, in_flight, release):
    """Start ``n`` calls at once; once each is refused or in flight, ``release()`` them; return (answers, refused)."""
    refused = []

    def one(_):
        try:
            return call()
        except BudgetExceeded:
            refused.append(1)
            return None

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        deadline = time.monotonic() + 10
        while in_flight() + len(refused) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        release()
        answers = [f.result() for f in futures]
    return [a for a in answers if a is not None], len(refused)


@pytest.mark.parametrize("unit", ["tokens", "usd"])
def test_concurrent_misses_never_spend_more_than_the_budget(unit):
    """32 calls in flight together against a budget that holds 5: 5 are sent, the rest refused."""
    pricing = Pricing()
    prompt, completion = estimate_request_tokens(REQUEST, 256)
    if unit == "tokens":
        budget = BudgetGuard(tokens_per_day=5 * (prompt + completion) + 10, timer=lambda: DAY)
    else:
        budget = BudgetGuard(usd_per_day=5 * pricing.cost("gpt-4o-mini", prompt, completion) + 5e-6, timer=lambda: DAY)
    provider = GatedProvider()
    upstream = make(provider, budget=budget)
    answers, refused = race(lambda: upstream.call(REQUEST), 32, lambda: provider.arrived, provider.opened.set)
    assert (len(answers), refused, len(provider.requests)) == (5, 27, 5)
    state = budget.state()[f"{unit}_per_day"]
    if unit == "tokens":
        used = sum(a.prompt_tokens + a.completion_tokens for a in answers)
    else:  # the ledger keeps micro-dollars
        used = sum(round(pricing.cost(a.model, a.prompt_tokens, a.completion_tokens) * 1e6) for a in answers) / 1e6
    assert state["spent"] == pytest.approx(used) and state["spent"] <= state["limit"]


@pytest.mark.server
def test_concurrent_misses_against_the_mock_upstream_never_spend_more_than_the_budget(tmp_path):
    from servers import running_server

    from semcache.storage.disk import DiskStore
    from semcache.testing.mock import create_app

    arrived, opened = [], threading.Event()

    async def hold(seconds):  # the mock's latency: every request waits until all 32 calls are in flight or refused
        arrived.append(1)
        await asyncio.to_thread(opened.wait, 10)

    store = DiskStore(str(tmp_path / "cache"))
    limit = 5 * estimate() + 10
    budget = BudgetGuard(tokens_per_day=limit, timer=lambda: DAY, ledger=store)
    try:
        with running_server(create_app(latency_ms=1, sleep=hold)) as url:
            with OpenAIUpstream(Endpoint(f"{url}/v1", "sk-mock", name="mock"), budget=budget) as upstream:
                answers, refused = race(lambda: upstream.call(REQUEST), 32, lambda: len(arrived), opened.set)
        assert (len(answers), refused, len(arrived)) == (5, 27, 5)
        spent = budget.state()["tokens_per_day"]["spent"]
        assert spent == sum(a.prompt_tokens + a.completion_tokens for a in answers) <= limit
    finally:
        opened.set()
        store.close()


def test_a_failed_call_gives_its_budget_reservation_back():
    budget = BudgetGuard(tokens_per_day=1000, timer=lambda: DAY)
    with pytest.raises(UpstreamStatusError):
        make(Provider([error(400, "invalid_request_error")]), budget=budget).call(REQUEST)
    with pytest.raises(UpstreamStatusError):  # answered 200, but not with a usable body
        make(Provider([httpx2.Response(200, json={"id": "x"})]), budget=budget).call(REQUEST)
    assert budget.state()["tokens_per_day"]["spent"] == 0


def test_a_stream_settles_its_budget_from_the_usage_chunk_or_keeps_the_reservation():
    budget = BudgetGuard(tokens_per_day=1000, timer=lambda: DAY)
    upstream = make(Provider([streaming]), budget=budget)
    assert list(upstream.stream(REQUEST)) == CHUNKS
    assert budget.state()["tokens_per_day"]["spent"] == 11  # the final chunk's usage: 9 + 2

    def no_usage(request, body):
        return httpx2.Response(200, content=sse(*CHUNKS[:2]), headers={"content-type": "text/event-stream"})

    list(make(Provider([no_usage]), budget=budget).stream(REQUEST))
    assert budget.state()["tokens_per_day"]["spent"] == 11 + estimate()  # unknown usage: the upper bound stays spent


class LedgerOnDisk:
    """A ledger (in memory) whose writes or reads fail like a broken disk, and which records the threads it ran on."""

    def __init__(self, *, fail_settle=False, fail_all=False):
        self.totals, self.threads = {}, set()
        self.fail_settle, self.fail_all = fail_settle, fail_all
        self._lock = threading.Lock()

    def _enter(self):
        self.threads.add(threading.get_ident())
        if self.fail_all:
            raise StoreError("database is locked")

    def add_total(self, key, amount):
        self._enter()
        if self.fail_settle:
            raise StoreError("disk I/O error")
        with self._lock:
            self.totals[key] = self.totals.get(key, 0) + amount
            return self.totals[key]

    def reserve_total(self, key, amount, limit):
        self._enter()
        with self._lock:
            if self.totals.get(key, 0) + amount > limit:
                return None
            self.totals[key] = self.totals.get(key, 0) + amount
            return self.totals[key]

    def total(self, key):
        self._enter()
        return self.totals.get(key, 0)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_ledger_failure_after_the_answer_is_logged_once_counted_and_the_answer_returned(asynchronous, caplog):
    stats = Stats()
    budget = BudgetGuard(tokens_per_day=1000, timer=lambda: DAY, ledger=LedgerOnDisk(fail_settle=True))
    provider = Provider()
    upstream = make(provider, budget=budget, stats=stats,
                    async_http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(provider)))

    async def acalls():
        return [await upstream.acall(REQUEST) for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="semcache"):
        answers = asyncio.run(acalls()) if asynchronous else [upstream.call(REQUEST) for _ in range(3)]
    assert all(a.body["choices"][0]["message"]["content"] == "hello" for a in answers)
    total = stats.snapshot()["total"]
    assert (total["errors.StoreError"], total["upstream_calls"]) == (3, 3)
    warnings = [r for r in caplog.records if "budget ledger failed" in r.getMessage()]
    assert len(warnings) == 1 and "StoreError" in warnings[0].getMessage()


def test_failing_pricing_or_stats_after_the_answer_do_not_fail_the_call():
    class BrokenPricing(Pricing):
        def cost(self, model, prompt_tokens, completion_tokens):
            raise KeyError(model)

    stats = Stats()
    answer = make(Provider(), pricing=BrokenPricing(), stats=stats).call(REQUEST)
    assert answer.completion_tokens == 5 and stats.snapshot()["total"]["errors.KeyError"] == 1


def test_a_ledger_that_cannot_be_read_before_the_call_fails_closed():
    """No call is sent when its spending cannot be counted; the refusal says why, and is not BudgetExceeded."""
    stats, provider = Stats(), Provider()
    budget = BudgetGuard(tokens_per_day=1000, timer=lambda: DAY, ledger=LedgerOnDisk(fail_all=True))
    with pytest.raises(UpstreamError) as info:
        make(provider, budget=budget, stats=stats).call(REQUEST)
    assert not isinstance(info.value, BudgetExceeded) and info.value.code == "budget_ledger_unavailable"
    assert provider.requests == [] and stats.snapshot()["total"]["errors.UpstreamError"] == 1


def test_acall_does_its_ledger_io_in_a_worker_thread_never_on_the_event_loop():
    ledger, provider = LedgerOnDisk(), Provider()
    budget = BudgetGuard(tokens_per_day=1000, timer=lambda: DAY, ledger=ledger)
    upstream = OpenAIUpstream(Endpoint("http://up.test/v1", KEY), budget=budget,
                              async_http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(provider)))

    async def main():
        await upstream.acall(REQUEST)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert ledger.threads and loop_thread not in ledger.threads
    assert budget.state()["tokens_per_day"]["spent"] == 16  # reserved and settled


@pytest.mark.server
@pytest.mark.parametrize("faults, error_class, counted", [
    ("quota:100%", QuotaExhausted, {"quota_exhausted": 1, "rate_limited_429": 0}),
    ("429:100%:0", RateLimited, {"quota_exhausted": 0, "rate_limited_429": 3}),
])
def test_quota_refusals_are_counted_apart_from_rate_limits(faults, error_class, counted):
    from servers import running_server

    from semcache.testing.mock import create_app

    clock, stats = Clock(1000.0), Stats()
    with running_server(create_app(faults=faults)) as url:
        with OpenAIUpstream(Endpoint(f"{url}/v1", "sk-mock"), retry=RetryPolicy(max_attempts=3, rng=random.Random(0)),
                            stats=stats, timer=clock, sleep=clock.sleep) as upstream:
            with pytest.raises(error_class):
                upstream.call(REQUEST)
    total = stats.snapshot()["total"]
    assert {name: total.get(name, 0) for name in counted} == counted
