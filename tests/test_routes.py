"""Several upstreams in one sidecar: the routes table, fallbacks, per-route keys and limiters."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import httpx2
import openai
import pytest

from semcache import MatchPolicy
from semcache.config import Settings
from semcache.errors import (
    ConfigError,
    DailyLimitReached,
    QuotaExhausted,
    RateLimited,
    RequestError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from semcache.testing.mock import create_app as create_mock
from semcache.testing.processes import free_port, stop_process
from semcache.testing.serving import running_server
from semcache.upstream.client import FunctionUpstream
from semcache.upstream.routes import Link, Rests, RoutedUpstream, falls_back
from semcache.wiring import routes_from_settings

from servers import Sidecars

POLICY = MatchPolicy.cosine(0.9)


def route(name: str, models, url: str, **extra) -> dict:
    return {"name": name, "models": models, "base_url": url, "key_env": name.upper() + "_KEY", **extra}


# -- the table ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, named", [
    ({"models": ["x"], "base_url": "http://h", "key_env": "K"}, "routes[0].name"),
    ({"name": "a", "models": [], "base_url": "http://h", "key_env": "K"}, "routes[0] (a).models"),
    ({"name": "a", "models": ["x"], "base_url": "h", "key_env": "K"}, "routes[0] (a).base_url"),
    ({"name": "a", "models": ["x"], "base_url": "http://h", "key_env": "K", "api": "gemini"}, "routes[0] (a).api"),
    ({"name": "a", "models": ["x"], "base_url": "http://h"}, "needs key_env"),
    ({"name": "a", "models": ["x"], "base_url": "http://h", "key_env": "K", "rpd": 0}, "routes[0] (a).rpd"),
    ({"name": "a", "models": ["x"], "base_url": "http://h", "key_env": "K", "prices": {"x": {"input": 1}}}, "prices.x"),
    ({"name": "a", "models": ["x"], "base_url": "http://h", "key_env": "K", "fallbacks": ["nowhere"]}, "'nowhere'"),
    ({"name": "a", "models": ["x"], "base_url": "http://h", "key_env": "K", "colour": "red"}, "unknown field 'colour'"),
    ({"name": "default", "models": ["x"], "base_url": "http://h", "key_env": "K"}, "other than 'default'"),
])
def test_a_bad_route_names_its_field(raw, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        routes_from_settings(Settings(routes=[raw]))


def test_routes_match_by_glob_in_order_and_messages_need_an_anthropic_route():
    table = routes_from_settings(Settings(routes=[
        route("claude", ["claude-*"], "https://api.anthropic.com/v1", api="anthropic"),
        route("gemini", ["gemini-*", "models/gemini-*"], "https://generativelanguage.googleapis.com/v1beta/openai"),
        route("catchall", ["*-chat", "qwen-*"], "https://api.deepseek.com"),
    ]))
    assert table.match("claude-sonnet-4-5", "messages").name == "claude"
    assert table.match("claude-sonnet-4-5", "chat").name == "claude"  # Anthropic's OpenAI-compatible endpoint
    assert table.match("gemini-2.5-flash").name == "gemini" and table.match("models/gemini-2.5-pro").name == "gemini"
    assert table.match("deepseek-chat").name == "catchall" and table.match("qwen-plus").name == "catchall"
    assert table.match("gpt-4o-mini").name == "default" and table.match(None).name == "default"
    with pytest.raises(RequestError, match="Messages API"):
        table.match("gpt-4o-mini", "messages")


def test_route_prices_join_the_pricing_table():
    from semcache.wiring import pricing_from_settings

    pricing = pricing_from_settings(Settings(routes=[route("local", ["llama-*"], "http://127.0.0.1:1/v1",
                                                           prices={"llama-3-8b": {"input": 0.05, "output": 0.1}})]))
    assert pricing.cost("llama-3-8b", 1_000_000, 1_000_000) == pytest.approx(0.15)
    assert pricing.price("gpt-4o-mini") is not None  # the built-in table is still there


# -- fallbacks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("error, falls", [
    (UpstreamStatusError("down", status_code=503), True),
    (UpstreamStatusError("overloaded", status_code=529), True),
    (UpstreamTimeout("slow"), True),
    (QuotaExhausted("spent", status_code=429), True),
    (DailyLimitReached("over TPD", retry_after=432), True),
    (RateLimited("per minute", retry_after=1), False),
    (UpstreamStatusError("bad request", status_code=400), False),
])
def test_only_the_providers_failures_fall_back(error, falls):
    assert falls_back(error) is falls


def _answer(text: str):
    return lambda request, kind: {"choices": [{"message": {"role": "assistant", "content": text}}], "model": request["model"],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def _failing(error):
    def handler(request, kind):
        raise error
    return handler


def test_a_chain_answers_from_the_first_route_that_can(clock):
    primary = FunctionUpstream(_failing(UpstreamStatusError("down", status_code=502)), name="primary")
    backup = FunctionUpstream(_answer("from backup"), name="backup")
    chain = RoutedUpstream([Link("primary", primary), Link("backup", backup, "other-model")])
    answer = chain.call({"model": "m", "messages": []})
    assert answer.body["choices"][0]["message"]["content"] == "from backup" and answer.body["model"] == "other-model"
    assert (primary.calls, backup.calls) == (1, 1)
    refused = RoutedUpstream([Link("p", FunctionUpstream(_failing(UpstreamStatusError("bad", status_code=400)))), Link("b", backup)])
    with pytest.raises(UpstreamStatusError, match="bad"):
        refused.call({"model": "m", "messages": []})
    assert backup.calls == 1  # a bad request is the caller's: no other route is asked


def test_a_route_over_its_daily_limit_rests_until_the_wait_it_named(clock):
    rests = Rests(timer=clock)
    daily = FunctionUpstream(_failing(DailyLimitReached("over TPD", retry_after=432)), name="daily")
    backup = FunctionUpstream(_answer("backup"))
    chain = RoutedUpstream([Link("daily", daily), Link("backup", backup)], rests=rests)
    for _ in range(3):
        chain.call({"model": "m", "messages": []})
    assert daily.calls == 1 and backup.calls == 3  # asked once, then rested: never a loop of 429s
    alone = RoutedUpstream([Link("daily", daily)], rests=rests)
    clock.advance(400)
    with pytest.raises(DailyLimitReached) as caught:
        alone.call({"model": "m", "messages": []})
    assert caught.value.retry_after == pytest.approx(32) and daily.calls == 1
    clock.advance(33)
    with pytest.raises(DailyLimitReached):
        alone.call({"model": "m", "messages": []})
    assert daily.calls == 2  # the wait is over: the provider is asked again


# -- the sidecar, end to end --------------------------------------------------------------------------

@pytest.fixture
def sidecar(tmp_path, embedder, clock):
    sidecars = Sidecars()

    def start(environ: dict, **options):
        settings = Settings(cache_dir=str(tmp_path / f"cache{len(sidecars)}"), **options)
        return sidecars.start(settings, environ=environ, embedder=embedder, policy=POLICY, timer=clock)

    yield start
    sidecars.close()


@pytest.fixture
def mock_processes():
    """Start mock upstreams in processes of their own: ``start(key) -> base URL`` (they accept only ``key``)."""
    started = []

    def start(key: str) -> str:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "semcache.cli", "mock-upstream", "--port", str(port),
                                    "--api-key-env", "MOCK_KEY"], env={**os.environ, "MOCK_KEY": key},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        for _ in range(400):
            try:
                httpx2.get(url + "/mock/stats", timeout=1)
                return url
            except httpx2.TransportError:
                time.sleep(0.05)
        raise AssertionError("mock upstream did not start")

    yield start
    for process in started:
        stop_process(process)


def stats(url: str) -> dict:
    return httpx2.get(url + "/mock/stats").json()


def ask(client: openai.OpenAI, model: str, text: str):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])
    return raw.headers, raw.parse()


def test_two_models_reach_two_routes_in_processes_of_their_own(sidecar, mock_processes):
    openai_url, deepseek_url = mock_processes("sk-openai"), mock_processes("sk-deepseek")
    url = sidecar({"OPENAI_API_KEY": "sk-openai", "DEEPSEEK_KEY": "sk-deepseek"}, upstream_base_url=openai_url + "/v1",
                  pass_through_key=False, routes=[route("deepseek", ["deepseek-*"], deepseek_url + "/v1")])
    with openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0) as client:
        assert ask(client, "gpt-4o-mini", "Name a river.")[0]["x-semcache"] == "miss"
        assert ask(client, "deepseek-chat", "Name a river.")[0]["x-semcache"] == "miss"
        assert ask(client, "deepseek-chat", "Name a river.")[0]["x-semcache"] == "hit"  # one cache for both
    assert stats(openai_url)["by_model"] == {"gpt-4o-mini": 1}
    assert stats(deepseek_url)["by_model"] == {"deepseek-chat": 1}  # each key reached only its own provider


def test_one_set_of_stats_for_every_route(sidecar, tmp_path):
    with running_server(create_mock()) as first, running_server(create_mock()) as second:
        url = sidecar({"OPENAI_API_KEY": "k1", "QWEN_KEY": "k2", "SEMCACHE_ADMIN_TOKEN": "adm"}, upstream_base_url=first + "/v1",
                      routes=[route("qwen", ["qwen-*"], second + "/v1")])
        with openai.OpenAI(base_url=url + "/v1", api_key="k1", max_retries=0) as client:
            ask(client, "gpt-4o-mini", "One?")
            ask(client, "qwen-plus", "Two?")
            ask(client, "qwen-plus", "Two?")
            ask(client, "my-local-model", "Three?")
        snapshot = httpx2.get(url + "/semcache/stats", headers={"Authorization": "Bearer adm"}).json()
    assert snapshot["total"]["requests"] == 4 and snapshot["total"]["upstream_calls"] == 3
    assert snapshot["by_model"]["qwen-plus"]["exact_hits"] == 1 and snapshot["by_model"]["gpt-4o-mini"]["misses"] == 1
    assert snapshot["by_model"]["qwen-plus"]["cost_spent_usd"] > 0
    assert snapshot["by_model"]["my-local-model"]["cost_spent_usd"] is None  # unpriced, never $0
    assert snapshot["total"]["unpriced_upstream_calls"] == 1


def test_a_callers_key_never_reaches_another_provider(sidecar):
    with running_server(create_mock(api_key="sk-gemini")) as gemini:
        url = sidecar({"GEMINI_KEY": "sk-gemini"}, upstream_base_url="http://127.0.0.1:9/v1",
                      routes=[route("gemini", ["gemini-*"], gemini + "/v1")])
        with openai.OpenAI(base_url=url + "/v1", api_key="sk-openai-caller", max_retries=0) as client:
            headers, answer = ask(client, "gemini-2.5-flash", "Hello?")  # the mock accepts only the route's own key
        assert answer.choices[0].message.content and stats(gemini)["by_model"] == {"gemini-2.5-flash": 1}


def test_a_route_without_its_key_is_a_401_naming_the_variable(sidecar):
    url = sidecar({}, routes=[route("deepseek", ["deepseek-*"], "http://127.0.0.1:9/v1")], pass_through_key=False)
    with openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError, match="DEEPSEEK_KEY"):
            ask(client, "deepseek-chat", "Hi?")


def test_5xx_falls_back_to_the_next_route_with_its_model(sidecar):
    with running_server(create_mock(faults="500:100%")) as broken, running_server(create_mock()) as backup:
        url = sidecar({"PRIMARY_KEY": "k", "BACKUP_KEY": "k"}, max_attempts=2, routes=[
            route("primary", ["gpt-4o-mini"], broken + "/v1", fallbacks=[{"route": "backup", "model": "qwen-plus"}]),
            route("backup", ["qwen-*"], backup + "/v1")])
        with openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
            headers, answer = ask(client, "gpt-4o-mini", "Which model?")
        assert answer.model == "qwen-plus" and headers["x-semcache"] == "miss"
        assert stats(broken)["by_status"] == {"500": 2} and stats(backup)["by_model"] == {"qwen-plus": 1}


def test_each_route_paces_under_its_own_limiter(sidecar):
    with running_server(create_mock()) as first, running_server(create_mock()) as second:
        url = sidecar({"A_KEY": "k", "B_KEY": "k"}, deadline=1.0, routes=[
            route("a", ["model-a"], first + "/v1", rpm=1), route("b", ["model-b"], second + "/v1", rpm=1)])
        with openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
            ask(client, "model-a", "First?")
            ask(client, "model-b", "First?")  # route a's minute is used up; b's is its own
            with pytest.raises(openai.RateLimitError) as caught:
                ask(client, "model-a", "Second?")
        assert int(caught.value.response.headers["retry-after"]) > 50
        assert stats(first)["by_model"] == {"model-a": 1} and stats(second)["by_model"] == {"model-b": 1}


def _served_at(prefix: str, app):
    """The mock, answering at a provider's own path (``{prefix}/chat/completions``) as the provider does."""
    async def asgi(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(prefix + "/"):
            path = "/v1" + scope["path"][len(prefix):]
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await app(scope, receive, send)
    return asgi


def test_gemini_deepseek_and_qwen_through_their_openai_compatible_paths(sidecar):
    shapes = {"gemini": ("/v1beta/openai", "gemini-2.5-flash"), "deepseek": ("", "deepseek-chat"),
              "qwen": ("/compatible-mode/v1", "qwen-plus")}
    with contextlib.ExitStack() as stack:
        mocks = {name: create_mock() for name in shapes}
        urls = {name: stack.enter_context(running_server(_served_at(prefix, mocks[name]))) + prefix
                for name, (prefix, _) in shapes.items()}
        url = sidecar({"GEMINI_KEY": "g", "DEEPSEEK_KEY": "d", "QWEN_KEY": "q"},
                      routes=[route(name, [model.split("-")[0] + "-*"], urls[name]) for name, (_, model) in shapes.items()])
        with openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0) as client:
            for name, (_, model) in shapes.items():
                headers, answer = ask(client, model, "Say something.")
                assert headers["x-semcache"] == "miss" and answer.model == model and answer.choices[0].message.content
        for name, (_, model) in shapes.items():
            assert mocks[name].state.mock.stats()["by_model"] == {model: 1}
