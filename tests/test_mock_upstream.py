"""The mock upstream, checked through the official openai SDK against a real loopback server."""

from __future__ import annotations

import asyncio
import json
import math
import time

import httpx2
import numpy as np
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.errors import ConfigError
from semcache.testing.mock import create_app
from semcache.testing.mock_faults import Fault, FaultPlan, RateLimits, TokenBucket, format_duration, parse_faults
from semcache.upstream.tokens import count_message_tokens, count_tokens
from servers import running_server

MODEL = "gpt-4o-mini"
HI = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0)


@pytest.fixture(scope="module")
def url():
    with running_server(create_app()) as base:
        yield base


@pytest.fixture(scope="module")
def http():
    with httpx2.Client() as h:  # one client: httpx2.post() would build a TLS context per call
        yield h


@pytest.fixture(scope="module")
def client(url):
    with sdk(url) as c:
        yield c


# --- fault spec, plan, limits: pure logic -----------------------------------------------------------

def test_parse_faults_reads_percent_fraction_and_seconds():
    assert parse_faults("") == ()
    assert parse_faults(" 429:10% , quota:0.5, slow:20%:1.5s ") == (
        Fault("429", 0.10, None), Fault("quota", 0.5, None), Fault("slow", 0.2, 1.5))
    assert parse_faults("quota:100%") == (Fault("quota", 1.0, None),)


@pytest.mark.parametrize(("spec", "named"), [
    ("teapot:10%", "teapot"),
    ("500", "500"),
    ("500:ten", "ten"),
    ("500:150%", "150%"),
    ("500:-0.1", "-0.1"),
    ("500:10%:3", "500:10%:3"),
    ("slow:10%:soon", "soon"),
    ("500:10%,500:20%", "500"),
    ("500:60%,502:50%", "500:60%,502:50%"),
])
def test_parse_faults_names_the_bad_part(spec, named):
    with pytest.raises(ConfigError, match=named):
        parse_faults(spec)


def test_fault_plan_is_deterministic_and_follows_the_rates():
    faults = parse_faults("500:20%,drop:10%,slow:50%:3")
    plan_a, plan_b = FaultPlan(faults, seed=7), FaultPlan(faults, seed=7)
    draws = [plan_a.draw() for _ in range(2000)]
    assert draws == [plan_b.draw() for _ in range(2000)]
    assert draws[:50] != [FaultPlan(faults, seed=8).draw() for _ in range(50)]
    kinds = [fault.kind if fault else None for fault, _ in draws]
    assert abs(kinds.count("500") / 2000 - 0.20) < 0.03
    assert abs(kinds.count("drop") / 2000 - 0.10) < 0.03
    assert {delay for _, delay in draws} == {0.0, 3.0}
    plan_a.reset()
    assert [plan_a.draw() for _ in range(5)] == draws[:5]
    assert FaultPlan(parse_faults("quota:100%")).draw()[0].kind == "quota"


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.012, "12ms"), (0.0001, "1ms"), (1, "1s"), (1.5, "1.5s"), (59.9321, "59.933s"), (360, "6m0s"), (3725, "1h2m5s"),
])
def test_format_duration_writes_go_style_like_openai(seconds, text):
    assert format_duration(seconds) == text


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 120), steps=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 40)), max_size=40))
def test_token_bucket_never_admits_more_than_the_rate(limit, steps):
    now = [0.0]  # hypothesis cannot take the function-scoped `clock` fixture
    limits = RateLimits(tpm=limit, timer=lambda: now[0])
    admitted = 0
    for wait, cost in steps:
        now[0] += wait
        if limits.admit(cost) is None:
            admitted += cost
        assert admitted <= limit + now[0] * limit / 60 + 1e-6


def test_token_bucket_reports_reset_and_remaining(clock):
    bucket = TokenBucket(60, timer=clock)
    bucket.take(60)
    assert bucket.headers("requests") == {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                                          "x-ratelimit-reset-requests": "1m0s"}
    clock.advance(30)
    assert bucket.wait_for(31) == pytest.approx(1.0)


# --- the routes, through the SDK ------------------------------------------------------------------

@pytest.mark.server
def test_chat_is_deterministic_per_request_and_counts_usage_with_tiktoken(client):
    first = client.chat.completions.create(model=MODEL, messages=HI)
    again = client.chat.completions.create(model=MODEL, messages=HI)
    other = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is the capital of Peru?"}])
    other_model = client.chat.completions.create(model="gpt-4o", messages=HI)
    answer = first.choices[0].message.content
    assert answer and answer == again.choices[0].message.content
    assert first.id != again.id
    assert other.choices[0].message.content != answer and other_model.choices[0].message.content != answer
    assert first.choices[0].finish_reason == "stop"
    assert first.usage.prompt_tokens == count_message_tokens(HI, MODEL)
    assert first.usage.completion_tokens == count_tokens(answer, MODEL)
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


@pytest.mark.server
def test_chat_honours_n_and_max_tokens(client):
    single = client.chat.completions.create(model=MODEL, messages=HI)
    three = client.chat.completions.create(model=MODEL, messages=HI, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert three.choices[0].message.content == single.choices[0].message.content
    assert len({c.message.content for c in three.choices}) == 3
    short = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=3)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 3
    assert single.choices[0].message.content.startswith(short.choices[0].message.content)


@pytest.mark.server
def test_chat_calls_a_tool_when_forced_or_asked(client):
    forced = client.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER_TOOL],
                                            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = forced.choices[0].message.tool_calls[0]
    assert forced.choices[0].finish_reason == "tool_calls" and forced.choices[0].message.content is None
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit", "days"} and arguments["unit"] in ("c", "f") and isinstance(arguments["days"], int)
    asked = client.chat.completions.create(model=MODEL, tools=[WEATHER_TOOL],
                                           messages=[{"role": "user", "content": "Please get weather for Paris"}])
    assert asked.choices[0].message.tool_calls[0].function.name == "get_weather"
    plain = client.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER_TOOL])
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].message.content


@pytest.mark.server
def test_chat_json_mode_answers_valid_json(client):
    reply = client.chat.completions.create(model=MODEL, messages=HI, response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content)["answer"], str)
    schema = {"type": "object", "properties": {"capital": {"type": "string"}, "population": {"type": "integer"}}}
    typed = client.chat.completions.create(model=MODEL, messages=HI,
                                           response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert set(json.loads(typed.choices[0].message.content)) == {"capital", "population"}


@pytest.mark.server
def test_chat_stream_replays_the_same_answer_chunk_by_chunk(client):
    whole = client.chat.completions.create(model=MODEL, messages=HI)
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 2 and "".join(pieces) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.server
def test_chat_stream_of_a_tool_call_reassembles_its_arguments(client):
    kwargs = dict(model=MODEL, messages=HI, tools=[WEATHER_TOOL], tool_choice="required")
    whole = client.chat.completions.create(**kwargs).choices[0].message.tool_calls[0]
    deltas = [tc for c in client.chat.completions.create(stream=True, **kwargs) if c.choices
              for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id == whole.id and deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas) == whole.function.arguments


@pytest.mark.server
def test_async_client_streams_and_runs_concurrently(url):
    async def main():
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0) as aclient:
            questions = [[{"role": "user", "content": f"question {i}"}] for i in range(8)]
            replies = await asyncio.gather(*(aclient.chat.completions.create(model=MODEL, messages=q) for q in questions))
            stream = await aclient.chat.completions.create(model=MODEL, messages=questions[0], stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return replies, streamed

    replies, streamed = asyncio.run(main())
    assert len({r.choices[0].message.content for r in replies}) == 8
    assert streamed == replies[0].choices[0].message.content


@pytest.mark.server
def test_completions_answer_truncate_and_stream(client):
    reply = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=500)
    text = reply.choices[0].text
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == count_tokens("Once upon a time", "gpt-3.5-turbo-instruct")
    assert reply.usage.completion_tokens == count_tokens(text, "gpt-3.5-turbo-instruct")
    default = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    assert default.choices[0].finish_reason == "length" and default.usage.completion_tokens == 16  # the API's default max_tokens
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=500,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


@pytest.mark.server
def test_responses_returns_an_output_message_with_usage(client):
    reply = client.responses.create(model=MODEL, input="Tell me about Paris", instructions="Be brief.")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about Paris"}]
    assert reply.status == "completed" and reply.output_text
    assert reply.usage.input_tokens == count_message_tokens(messages, MODEL)
    assert reply.usage.output_tokens == count_tokens(reply.output_text, MODEL)
    as_items = client.responses.create(model=MODEL, instructions="Be brief.",
                                       input=[{"role": "user", "content": [{"type": "input_text", "text": "Tell me about Paris"}]}])
    assert as_items.output_text == reply.output_text
    events = list(client.responses.create(model=MODEL, input="Tell me about Paris", instructions="Be brief.", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == reply.output_text
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == reply.output_text
    cut = client.responses.create(model=MODEL, input="Tell me about Paris", max_output_tokens=16)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


@pytest.mark.server
def test_embeddings_are_deterministic_unit_vectors(client):
    texts = ["a cat sat", "a dog ran"]
    as_base64 = client.embeddings.create(model="text-embedding-3-small", input=texts)  # the SDK asks for base64
    as_float = client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    vectors = np.array([d.embedding for d in as_base64.data])
    assert vectors.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors, np.array([d.embedding for d in as_float.data]), rtol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    assert as_float.usage.prompt_tokens == sum(count_tokens(t, "text-embedding-3-small") for t in texts)
    single = client.embeddings.create(model="text-embedding-3-small", input="a cat sat", dimensions=16)
    assert len(single.data[0].embedding) == 16 and math.isclose(np.linalg.norm(single.data[0].embedding), 1.0, rel_tol=1e-5)


@pytest.mark.server
def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-nope")
    assert info.value.code == "model_not_found"


@pytest.mark.server
def test_bad_requests_get_openai_error_bodies(client, url, http):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[])
    assert info.value.param == "messages" and info.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HI, n=0)
    assert info.value.param == "n" and info.value.code == "integer_below_min_value"
    malformed = http.post(url + "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert set(malformed.json()["error"]) == {"message", "type", "param", "code"}
    missing = http.post(url + "/v1/embeddings", json={"model": "text-embedding-3-small"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"
    unknown = http.post(url + "/v1/teapot", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.server
def test_every_response_carries_request_id_and_processing_time(url, http):
    ok = http.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": HI})
    bad = http.get(url + "/v1/teapot")
    for response in (ok, bad):
        assert response.headers["x-request-id"].startswith("req_")
        assert int(response.headers["openai-processing-ms"]) >= 0
    assert ok.headers["x-request-id"] != bad.headers["x-request-id"]
    assert "x-ratelimit-limit-requests" not in ok.headers  # no limits configured


# --- limits, faults, stats ------------------------------------------------------------------------

@pytest.mark.server
def test_rpm_limit_refuses_the_61st_request_and_recovers(http, clock):
    with running_server(create_app(rpm=60, timer=clock)) as base, sdk(base) as c:
        for _ in range(60):
            raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=HI)
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        assert raw.headers["x-ratelimit-limit-requests"] == "60"
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model=MODEL, messages=HI)
        error = info.value
        assert error.code == "rate_limit_exceeded" and error.type == "requests"
        assert "Limit 60, Used 60, Requested 1" in error.message and "try again in 1s" in error.message
        assert error.response.headers["retry-after"] == "1" and error.response.headers["retry-after-ms"] == "1000"
        clock.advance(1.0)  # one request's worth comes back; the refused one consumed nothing
        c.chat.completions.create(model=MODEL, messages=HI)
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model=MODEL, messages=HI)
        stats = http.get(base + "/mock/stats").json()
    assert stats["by_status"] == {"200": 61, "429": 2} and stats["rate_limited"] == {"requests": 2}


@pytest.mark.server
def test_tpm_limit_counts_prompt_plus_max_tokens(clock):
    cost = count_message_tokens(HI, MODEL) + 50
    with running_server(create_app(tpm=cost + 10, timer=clock)) as base, sdk(base) as c:
        c.chat.completions.create(model=MODEL, messages=HI, max_tokens=50)
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model=MODEL, messages=HI, max_tokens=50)
        assert info.value.type == "tokens" and "tokens per min (TPM)" in info.value.message
        assert int(info.value.response.headers["retry-after-ms"]) > 0
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model=MODEL, messages=HI, max_tokens=10_000)
        assert "Request too large" in info.value.message


@pytest.mark.server
def test_quota_fault_is_insufficient_quota_without_retry_after():
    with running_server(create_app(faults="quota:100%")) as base, sdk(base) as c:
        for _ in range(3):
            with pytest.raises(openai.RateLimitError) as info:
                c.chat.completions.create(model=MODEL, messages=HI)
            assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"
            assert "You exceeded your current quota" in info.value.message
            assert "retry-after" not in info.value.response.headers


@pytest.mark.server
def test_garbage_and_drop_faults_break_the_client(http):
    with running_server(create_app(faults="garbage:100%")) as base, sdk(base) as c:
        with pytest.raises(ValueError):  # the SDK's JSON decoding fails on the body
            c.chat.completions.create(model=MODEL, messages=HI)
    with running_server(create_app(faults="drop:100%")) as base, sdk(base) as c:
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model=MODEL, messages=HI)
        assert http.get(base + "/mock/stats").json()["by_status"] == {"dropped": 1}


@pytest.mark.server
def test_faults_replay_with_the_same_seed_and_after_reset(http):
    def statuses(base: str) -> list[int]:
        return [http.post(base + "/v1/chat/completions", json={"model": MODEL, "messages": HI}).status_code for _ in range(20)]

    spec = "429:20%,500:15%,503:10%"
    with running_server(create_app(faults=spec, seed=3)) as a, running_server(create_app(faults=spec, seed=3)) as b:
        first = statuses(a)
        assert first == statuses(b)
        assert {200, 429, 500} <= set(first)
        http.post(a + "/mock/reset")
        assert statuses(a) == first
        stats = http.get(a + "/mock/stats").json()
    assert stats["requests"] == 20 and sum(stats["faults"].values()) == 20 - first.count(200)
    assert stats["responses_429"] == first.count(429)


@pytest.mark.server
def test_latency_and_slow_faults_sleep_without_blocking():
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    app = create_app(latency_ms=250, faults="slow:100%:3", sleep=fake_sleep)
    with running_server(app) as base, sdk(base) as c:
        c.chat.completions.create(model=MODEL, messages=HI)
    assert slept == [pytest.approx(3.25)]


@pytest.mark.server
def test_stats_count_routes_statuses_tokens_and_reset_clears_them(url, client, http):
    http.post(url + "/mock/reset")
    reply = client.chat.completions.create(model=MODEL, messages=HI)
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    stats = http.get(url + "/mock/stats").json()
    assert stats["by_route"] == {"/v1/chat/completions": 2, "/v1/embeddings": 1}
    assert stats["by_status"] == {"200": 2, "400": 1}
    assert stats["tokens"]["completion"] == reply.usage.completion_tokens
    assert stats["tokens"]["prompt"] == reply.usage.prompt_tokens + count_tokens("hello", "text-embedding-3-small")
    http.post(url + "/mock/reset")
    assert http.get(url + "/mock/stats").json()["requests"] == 0


@pytest.mark.server
def test_api_key_when_set_is_required():
    with running_server(create_app(api_key="sk-right")) as base:
        with sdk(base) as wrong, pytest.raises(openai.AuthenticationError) as info:
            wrong.chat.completions.create(model=MODEL, messages=HI)
        assert info.value.code == "invalid_api_key"
        with openai.OpenAI(base_url=base + "/v1", api_key="sk-right", max_retries=0) as right:
            assert right.chat.completions.create(model=MODEL, messages=HI).choices[0].message.content


def test_create_app_rejects_bad_settings():
    with pytest.raises(ConfigError, match="rpm"):
        create_app(rpm=0)
    with pytest.raises(ConfigError, match="latency_ms"):
        create_app(latency_ms=-1)
    with pytest.raises(ConfigError, match="bogus"):
        create_app(faults="bogus:1%")


# --- odd input: 400 as OpenAI answers it, never a 500 ---------------------------------------------
ODD_BODIES = [  # (route, body, param): each answered 500 before, or was accepted where OpenAI refuses
    ("/v1/responses", {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
     "input[0].content[0].text"),
    ("/v1/responses", {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_text", "text": None}]}]},
     "input[0].content[0].text"),
    ("/v1/responses", {"model": MODEL, "input": [{"role": "user", "content": {"text": "x"}}]}, "input[0].content"),
    ("/v1/responses", {"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ("/v1/responses", {"model": MODEL, "input": "x", "text": {"format": "json"}}, "format"),
    ("/v1/responses", {"model": MODEL, "input": "x", "instructions": 5}, "instructions"),
    ("/v1/responses", {"model": MODEL, "input": "x", "stream": "yes"}, "stream"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    ("/v1/chat/completions", {"model": MODEL, "messages": HI, "tools": [WEATHER_TOOL], "tool_choice": {"function": "get_weather"}},
     "tool_choice"),
    ("/v1/chat/completions", {"model": MODEL, "messages": HI, "tools": [{"type": "function", "function": "f"}]}, "tools[0].function"),
    ("/v1/chat/completions", {"model": MODEL, "messages": HI, "response_format": {"type": "json_schema", "json_schema": "s"}},
     "response_format.json_schema"),
    ("/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True, "stream_options": "usage"}, "stream_options"),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "stream": 1}, "stream"),
]


@pytest.mark.server
@pytest.mark.parametrize("route, body, param", ODD_BODIES, ids=[f"{r}-{p}" for r, _, p in ODD_BODIES])
def test_odd_fields_get_400_naming_them(url, http, route, body, param):
    answer = http.post(url + route, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param and answer.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.server
@pytest.mark.parametrize("raw", [b'{"model": "m", "messages": [], "temperature": NaN}', b'{"model": "m", "x": Infinity}',
                                 b'{"model": "m", "x": 1e400}', b'{"model": "m", "x": "\\ud800"}', b"[" * 5000 + b"]" * 5000])
def test_bodies_openai_cannot_parse_get_400(url, http, raw):
    answer = http.post(url + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "could not parse the JSON body" in answer.json()["error"]["message"]


@given(schema=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.sampled_from(["type", "enum", "properties", "items", "x"]), inner, max_size=4), max_leaves=12))
@settings(max_examples=200, deadline=None)
def test_any_value_is_read_as_a_schema_without_failing(schema):
    from semcache.testing.mock_answers import json_from_schema, seeded_rng

    json.dumps(json_from_schema(schema, seeded_rng(b"0" * 8)))  # an answer, JSON all the way down


@pytest.mark.server
def test_chunk_delay_slows_a_stream():
    with running_server(create_app(chunk_delay_ms=30)) as base, sdk(base) as c:
        t0 = time.perf_counter()
        chunks = list(c.chat.completions.create(model=MODEL, messages=HI, stream=True))
        elapsed = time.perf_counter() - t0
    assert len(chunks) >= 4 and elapsed >= 0.03 * (len(chunks) - 1)
