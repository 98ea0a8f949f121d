"""Anthropic's Messages API through the sidecar: the official anthropic SDK -> a real uvicorn sidecar -> the Messages mock."""

from __future__ import annotations

import hashlib
import json
import time

import anthropic
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.keys import normalize
from semcache.server import create_app
from semcache.server.messages import assemble, replay
from semcache.testing.mock_anthropic import create_app as create_mock
from semcache.testing.serving import running_server

from servers import Sidecars

pytestmark = pytest.mark.server

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-alice"
POLICY = MatchPolicy.cosine(0.9)


@pytest.fixture(scope="module")
def mock_url():
    with running_server(create_mock(rpm=1000)) as url:
        yield url


@pytest.fixture
def mock(mock_url):
    httpx2.post(mock_url + "/mock/reset")
    return mock_url


def mock_stats(url: str) -> dict:
    return httpx2.get(url + "/mock/stats").json()


def script(url: str, *faults: dict) -> None:
    assert httpx2.post(url + "/mock/script", json=list(faults)).status_code == 200


def claude_route(mock: str, **extra) -> dict:
    return {"name": "anthropic", "models": ["claude-*"], "base_url": mock + "/v1", "api": "anthropic",
            "key_env": "ANTHROPIC_API_KEY", **extra}


@pytest.fixture
def sidecar(tmp_path, embedder, clock, mock):
    """``sidecar(**settings) -> URL``: a sidecar whose claude-* models go to the Messages mock."""
    sidecars = Sidecars()

    def start(route: dict | None = None, environ: dict | None = None, **options):
        options.setdefault("routes", [route or claude_route(mock, pass_through_key=True)])
        options.setdefault("max_attempts", 4)
        settings = Settings(cache_dir=str(tmp_path / f"cache{len(sidecars)}"), **options)
        return sidecars.start(settings, environ=environ or {}, embedder=embedder, policy=POLICY, timer=clock)

    yield start
    sidecars.close()


_CLIENTS: list = []


def claude(url: str, key: str = KEY, **options) -> anthropic.Anthropic:
    made = anthropic.Anthropic(base_url=url, api_key=key, **{"max_retries": 0, **options})
    _CLIENTS.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def ask(c: anthropic.Anthropic, text: str, **extra):
    raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": text}], **extra)
    return raw.headers, raw.parse()


# -- hits and misses ---------------------------------------------------------------------------

def test_miss_then_exact_then_semantic_hit(sidecar, mock):
    url = sidecar()
    c = claude(url)
    headers, first = ask(c, "What is the capital of France?", system="Answer in one line.")
    assert headers["x-semcache"] == "miss"
    assert first.content[0].type == "text" and first.content[0].text and first.usage.input_tokens > 0
    headers, again = ask(c, "What is the capital of France?", system="Answer in one line.")
    assert headers["x-semcache"] == "hit" and headers["x-semcache-match"] == "exact"
    assert again.content[0].text == first.content[0].text and again.id != first.id and again.id.startswith("msg_")
    headers, para = ask(c, "what is the capital of France", system="Answer in one line.")
    assert headers["x-semcache"] == "hit" and headers["x-semcache-match"] == "semantic"
    assert para.content[0].text == first.content[0].text
    assert mock_stats(mock)["by_model"] == {MODEL: 1}
    # The caller's own key reached Anthropic as x-api-key (the mock refuses a bearer token).
    assert mock_stats(mock)["by_key"] == {hashlib.sha256(KEY.encode()).hexdigest()[:12]: 1}


def test_system_tools_and_earlier_turns_are_in_the_partition(sidecar, mock):
    url = sidecar()
    c = claude(url)
    ask(c, "Tell me about Paris.", system="You are terse.")
    assert ask(c, "Tell me about Paris.", system="You are verbose.")[0]["x-semcache"] == "miss"
    tools = [{"name": "weather", "description": "weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    assert ask(c, "Tell me about Paris.", system="You are terse.", tools=tools)[0]["x-semcache"] == "miss"
    turns = [{"role": "user", "content": "Who is Ada?"}, {"role": "assistant", "content": "A mathematician."},
             {"role": "user", "content": "Tell me about Paris."}]
    raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, system="You are terse.", messages=turns)
    assert raw.headers["x-semcache"] == "miss"
    assert mock_stats(mock)["by_model"] == {MODEL: 4}
    # Only the last user message's text is the query; the rest is the partition.
    key = normalize({"model": MODEL, "max_tokens": 64, "system": "s", "messages": turns}, kind="messages")
    assert key.query_text == "Tell me about Paris."
    other = normalize({"model": MODEL, "max_tokens": 64, "system": "s", "messages": turns[2:]}, kind="messages")
    assert other.partition != key.partition


def test_a_tool_call_is_cached_and_replayed(sidecar, mock):
    url = sidecar()
    c = claude(url)
    tools = [{"name": "weather", "description": "weather now",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]
    choice = {"type": "tool", "name": "weather"}
    _, first = ask(c, "Weather in Oslo?", tools=tools, tool_choice=choice)
    assert first.stop_reason == "tool_use" and first.content[0].name == "weather" and set(first.content[0].input) == {"city", "days"}
    with c.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Weather in Oslo?"}],
                           tools=tools, tool_choice=choice) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == first.content[0].input and final.stop_reason == "tool_use"
    assert mock_stats(mock)["by_model"] == {MODEL: 1}


def test_anthropic_beta_is_forwarded_and_joins_the_partition(sidecar, mock):
    url = sidecar()
    c = claude(url)
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    assert ask(c, "Think about Paris.", extra_headers=beta)[0]["x-semcache"] == "miss"
    assert ask(c, "Think about Paris.")[0]["x-semcache"] == "miss"  # without the feature: another answer
    assert ask(c, "Think about Paris.", extra_headers=beta)[0]["x-semcache"] == "hit"
    with c.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Stream a thought."}],
                           extra_headers=beta) as stream:
        stream.get_final_message()
    assert mock_stats(mock)["by_beta"] == {"interleaved-thinking-2025-05-14": 2}


# -- streaming -----------------------------------------------------------------------------------

def test_streamed_miss_is_passed_through_stored_and_replayed_as_anthropic_events(sidecar, mock):
    url = sidecar()
    c = claude(url)
    messages = [{"role": "user", "content": "Describe the river Seine."}]
    with c.messages.stream(model=MODEL, max_tokens=64, messages=messages) as stream:
        texts = list(stream.text_stream)
        missed = stream.get_final_message()
    assert len(texts) > 1 and "".join(texts) == missed.content[0].text
    assert missed.usage.output_tokens > 1 and missed.usage.input_tokens > 0
    # The streamed miss was stored: the same request, not streamed, is a hit with the same message.
    headers, hit = ask(c, "Describe the river Seine.")
    assert headers["x-semcache"] == "hit" and hit.content[0].text == missed.content[0].text
    # A streamed hit is replayed as Anthropic's events, in Anthropic's order.
    with httpx2.stream("POST", url + "/v1/messages", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                       json={"model": MODEL, "max_tokens": 64, "messages": messages, "stream": True}) as raw:
        assert raw.headers["x-semcache"] == "hit" and raw.headers["content-type"].startswith("text/event-stream")
        names = [line[7:] for line in raw.iter_lines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1:4] == ["content_block_start", "content_block_delta", "content_block_stop"]
    with c.messages.stream(model=MODEL, max_tokens=64, messages=messages) as stream:
        replayed = stream.get_final_message()
    assert replayed.content[0].text == missed.content[0].text and replayed.stop_reason == missed.stop_reason
    assert mock_stats(mock)["by_model"] == {MODEL: 1}


def test_a_stream_that_breaks_ends_with_an_anthropic_error_event_and_is_not_stored(sidecar, mock):
    url = sidecar()
    c = claude(url)
    script(mock, {"fault": "stream_error"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        with c.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Break please."}]) as stream:
            list(stream.text_stream)
    assert "overloaded" in str(caught.value).lower() or "overloaded" in json.dumps(caught.value.body).lower()
    # The broken call may still be winding down in the sidecar: a request with the same key that joins
    # it shares its error (singleflight). Once it has ended, the same request is a miss: half an
    # answer is never stored.
    for _ in range(50):
        try:
            headers = ask(c, "Break please.")[0]
            break
        except anthropic.InternalServerError as exc:
            assert "overloaded" in str(exc).lower()  # only the broken flight's own error
            time.sleep(0.1)
    assert headers["x-semcache"] == "miss"


def test_assemble_and_replay_are_inverse_for_every_block_kind():
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "tool_use",
               "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 30},
               "content": [{"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
                           {"type": "text", "text": "Checking the weather."},
                           {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo", "days": [1, 2]}}]}
    events = []
    for raw in replay(message):
        text = raw.decode()
        assert text.startswith("event: ") and text.endswith("\n\n")
        events.append(json.loads(text.split("data: ", 1)[1]))
    assert assemble(events) == message
    assert assemble(events[:-1]) is None  # no message_stop: cut off, never stored


# -- pacing and errors ------------------------------------------------------------------------------

def test_a_429_is_paced_by_retry_after_and_answered(sidecar, mock):
    url = sidecar()
    c = claude(url)
    script(mock, {"fault": "429", "retry_after": 1})
    import time

    started = time.monotonic()
    headers, answer = ask(c, "Paced question?")
    assert time.monotonic() - started >= 0.9  # waited the retry-after Anthropic named
    assert headers["x-semcache"] == "miss" and answer.content[0].text
    assert mock_stats(mock)["by_status"] == {"429": 1, "200": 1}


def test_a_529_overloaded_is_retried(sidecar, mock):
    url = sidecar()
    c = claude(url)
    script(mock, {"fault": "529"}, {"fault": "529"})
    headers, answer = ask(c, "Busy day?")
    assert headers["x-semcache"] == "miss" and answer.content[0].text
    assert mock_stats(mock)["by_status"] == {"529": 2, "200": 1}


def test_overloaded_after_every_retry_is_a_529_in_anthropics_shape(sidecar, mock):
    url = sidecar(max_attempts=2)
    script(mock, {"fault": "529"}, {"fault": "529"})
    with pytest.raises(anthropic.InternalServerError) as caught:
        ask(claude(url), "Still busy?")
    assert caught.value.status_code == 529
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("fault", ["billing", "402"])
def test_billing_errors_are_never_retried(sidecar, mock, fault):
    url = sidecar()
    script(mock, {"fault": fault}, {"fault": fault})
    with pytest.raises(anthropic.APIStatusError) as caught:
        ask(claude(url, max_retries=2), "Can I pay?")  # the SDK itself must not retry it either
    assert caught.value.status_code == 402
    assert caught.value.body == {"type": "error", "error": {"type": "billing_error", "message": caught.value.body["error"]["message"]}}
    assert mock_stats(mock)["by_status"] == {"400" if fault == "billing" else "402": 1}


def test_a_permission_error_is_not_retried(sidecar, mock):
    url = sidecar()
    script(mock, {"fault": "403"})
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(claude(url), "Allowed?")
    assert mock_stats(mock)["by_status"] == {"403": 1}


def test_bad_requests_get_anthropics_error_shape(sidecar):
    url = sidecar()
    answer = httpx2.post(url + "/v1/messages", headers={"x-api-key": KEY}, json={"model": MODEL, "max_tokens": 5})
    assert answer.status_code == 400
    assert answer.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "missing required parameter 'messages'"}}
    answer = httpx2.post(url + "/v1/messages", headers={"x-api-key": KEY}, json={"model": "gpt-4o-mini", "max_tokens": 5,
                                                                              "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 400 and "api = \"anthropic\"" in answer.json()["error"]["message"]


# -- keys and tenancy ----------------------------------------------------------------------------------

def test_tenancy_is_a_hash_of_the_x_api_key(sidecar, mock):
    url = sidecar()
    ask(claude(url, "sk-ant-alice"), "Shared question?")
    assert ask(claude(url, "sk-ant-bob"), "Shared question?")[0]["x-semcache"] == "miss"
    assert ask(claude(url, "sk-ant-alice"), "Shared question?")[0]["x-semcache"] == "hit"
    assert mock_stats(mock)["by_model"] == {MODEL: 2}


def test_the_routes_own_key_is_used_when_the_route_does_not_pass_the_callers_through(sidecar, mock):
    url = sidecar(claude_route(mock), environ={"ANTHROPIC_API_KEY": "sk-ant-sidecar"})
    ask(claude(url, "sk-ant-caller"), "Whose key?")
    assert mock_stats(mock)["by_key"] == {hashlib.sha256(b"sk-ant-sidecar").hexdigest()[:12]: 1}


def test_sidecar_client_keys_work_as_x_api_key(sidecar, mock, tmp_path):
    keys = tmp_path / "keys.toml"
    digest = hashlib.sha256(b"sc-team-key").hexdigest()
    keys.write_text(f'[[keys]]\nkey_sha256 = "{digest}"\ntenant = "team"\n')
    url = sidecar(claude_route(mock), environ={"ANTHROPIC_API_KEY": "sk-ant-sidecar"}, client_keys_file=str(keys))
    assert ask(claude(url, "sc-team-key"), "Team question?")[0]["x-semcache"] == "miss"
    with pytest.raises(anthropic.AuthenticationError) as caught:
        ask(claude(url, "sc-wrong"), "Team question?")
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"


def test_a_claude_only_sidecar_needs_no_routes_table(sidecar, mock):
    url = sidecar(routes=[], upstream_base_url=mock + "/v1", upstream_api="anthropic")
    headers, answer = ask(claude(url), "Only Claude here?")
    assert headers["x-semcache"] == "miss" and answer.content[0].text
    assert mock_stats(mock)["by_key"] == {hashlib.sha256(KEY.encode()).hexdigest()[:12]: 1}  # pass_through_key: the caller's own


def test_an_unknown_upstream_api_is_a_config_error(tmp_path):
    from semcache.errors import ConfigError

    with pytest.raises(ConfigError, match="upstream_api"):
        create_app(Settings(cache_dir=str(tmp_path / "c"), upstream_api="gemini"), environ={})


_ODD = st.sampled_from([None, 0, -1, 1.5, "x", "", [], {}, [1], [{}], [{"type": "text"}], [{"type": "text", "text": 5}],
                        {"a": 1}, True, [{"type": "image", "source": {}}]])


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["model", "max_tokens", "messages", "system", "tools", "tool_choice", "stream", "temperature",
                              "content", "role", "stop_sequences"]), value=_ODD)
def test_a_malformed_request_is_answered_in_anthropics_error_shape_never_a_500(sidecar, mock, field, value):
    url = _fuzz_url(sidecar)
    body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    if field in ("content", "role"):
        body["messages"][0][field] = value
    else:
        body[field] = value
    answer = httpx2.post(url + "/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=30)
    assert answer.status_code < 500, answer.text
    if answer.status_code != 200:
        assert answer.json()["type"] == "error" and set(answer.json()["error"]) == {"type", "message"}


_FUZZ: dict = {}


def _fuzz_url(sidecar) -> str:
    """One sidecar for every example of the property test (its fixture is function-scoped)."""
    if sidecar not in _FUZZ:
        _FUZZ.clear()
        _FUZZ[sidecar] = sidecar()
    return _FUZZ[sidecar]


def test_count_tokens_passes_through_uncached(sidecar, mock):
    url = sidecar(claude_route(mock), environ={"ANTHROPIC_API_KEY": "sk-ant-sidecar"})
    c = claude(url)
    messages = [{"role": "user", "content": "How many tokens is this?"}]
    counted = c.messages.count_tokens(model=MODEL, messages=messages, system="Be brief.")
    _, answer = ask(c, "How many tokens is this?", system="Be brief.")
    assert counted.input_tokens == answer.usage.input_tokens > 0
    assert c.messages.count_tokens(model=MODEL, messages=messages).input_tokens < counted.input_tokens
    assert mock_stats(mock)["by_status"]["count_tokens"] == 2  # asked each time: a count is not an answer to cache
    with pytest.raises(anthropic.BadRequestError) as caught:  # the provider's own verdict comes back as it was
        c.messages.count_tokens(model=MODEL, messages=[])
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_anthropics_ratelimit_headers_hold_requests_back_before_a_429(tmp_path, embedder, clock):
    """The mock allows 2 requests a minute and says so in anthropic-ratelimit-*: the third waits (here: past the
    deadline, so the caller is told when to come back) instead of being sent into a 429."""
    with running_server(create_mock(rpm=2)) as limited:
        settings = Settings(cache_dir=str(tmp_path / "c"), deadline=2.0, routes=[claude_route(limited, pass_through_key=True)])
        cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=POLICY, timer=clock)
        with running_server(create_app(settings, cache=cache, environ={})) as url:
            c = claude(url)
            ask(c, "First question?")
            ask(c, "Second question?")
            with pytest.raises(anthropic.RateLimitError) as caught:
                ask(c, "Third question?")
        cache.close()
        assert caught.value.body["error"]["type"] == "rate_limit_error"
        # Anthropic's reset is when the limit is whole again: 2 requests a minute, both used: a minute
        assert 50 <= int(caught.value.response.headers["retry-after"]) <= 61
        assert mock_stats(limited)["by_status"] == {"200": 2}  # never a 429 from the provider
