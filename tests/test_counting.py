"""Each request is counted once, as what it was (#18 item 7).

- The same request stored by an identical one while this one waited for the model is an *exact*
  hit, never a semantic hit of similarity 1.0.
- A follower of an identical upstream call in flight is a "follower" (its own ``x-semcache`` value, counted
  as ``coalesced``), never a miss: 20 requests of 10 questions are 10 misses, not 20.
- An answer the request did not buy (hit, stale, follower) reports zero ``usage`` (what it cost),
  the stored counts under ``usage.semcache.saved``; read with the openai SDK, streamed or not.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

from test_cache import POLICY, answer, ask

MODEL = "gpt-4o-mini"


class StoringEmbedder(WordEmbedder):
    """Embeds like ``WordEmbedder``; the first time it embeds ``trigger`` it runs ``meanwhile`` first
    (an identical request landing while this one waits for the model)."""

    def __init__(self, trigger: str) -> None:
        super().__init__()
        self.trigger, self.meanwhile = trigger, None

    def embed(self, texts):
        if self.meanwhile is not None and self.trigger in texts:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return super().embed(texts)


def test_the_same_request_stored_during_the_embedding_wait_is_an_exact_hit(tmp_path):
    """Before: ``x-semcache-match: semantic``, similarity 1.0000, counted as a semantic hit."""
    text = "what is the capital city of france"
    embedder = StoringEmbedder(text)
    with SemanticCache(str(tmp_path / "c"), embedder=embedder, policy=POLICY, embed_cache_size=0) as cache:
        embedder.meanwhile = lambda: cache.insert(ask(text), answer("Paris"))
        hit = cache.lookup(ask(text))
        assert hit is not None and hit.kind == "exact" and hit.decision is None
        total = cache.stats()["total"]
        assert (total["exact_hits"], total["semantic_hits"]) == (1, 0)


def test_followers_of_a_call_in_flight_are_coalesced_not_misses(tmp_path):
    """Before: 20 requests of 10 questions counted 20 misses for 10 upstream calls."""
    calls = []
    barrier = threading.Barrier(20)

    def slow(request):
        calls.append(request["messages"][-1]["content"])
        time.sleep(0.5)
        return answer("answer to " + request["messages"][-1]["content"])

    questions = [f"question number {i} about {word}" for i, word in enumerate("abcdefghij")]
    with SemanticCache(str(tmp_path / "c"), embedder=WordEmbedder(), policy=POLICY) as cache:
        def one(i: int):
            barrier.wait()
            return cache.complete(ask(questions[i % 10]), call=slow)

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(one, range(20)))
        total = cache.stats()["total"]
    statuses = sorted(r.status for r in results)
    assert len(calls) == 10 and total["misses"] == 10 == statuses.count("miss")
    assert total["coalesced"] + total["exact_hits"] == 10 and total["coalesced"] == statuses.count("follower") > 0
    assert total["requests"] == 20 and total["requests_saved"] == 10
    for result in results:  # every answer is its own question's
        assert result.response == answer("answer to " + result.key.query_text)


@pytest.fixture(scope="module")
def mock_url():
    with running_server(create_mock(latency_ms=400)) as url:
        yield url


@pytest.fixture
def sidecar(tmp_path, mock_url):
    def start(**options):
        settings = Settings(cache_dir=str(tmp_path / f"c{len(started)}"), upstream_base_url=mock_url + "/v1", **options)
        cache = SemanticCache(settings.cache_dir, embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9))
        server = running_server(create_app(settings, cache=cache, environ={}))
        started.append((server, cache))
        return server.__enter__()

    started: list = []
    yield start
    for server, cache in reversed(started):
        server.__exit__(None, None, None)
        cache.close()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0)


def test_a_hit_reports_zero_usage_and_what_it_saved_with_the_openai_sdk(sidecar):
    url = sidecar()
    messages = [{"role": "user", "content": "what is the tallest mountain on earth"}]
    with client(url) as c:
        miss = c.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
        hit = c.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
        assert (miss.headers["x-semcache"], hit.headers["x-semcache"]) == ("miss", "hit")
        bought, served = miss.parse().usage, hit.parse().usage
        assert bought.prompt_tokens > 0 and bought.completion_tokens > 0  # the provider's own counts
        assert (served.prompt_tokens, served.completion_tokens, served.total_tokens) == (0, 0, 0)  # cost trackers bill 0
        saved = served.model_extra["semcache"]["saved"]
        assert (saved["prompt_tokens"], saved["completion_tokens"]) == (bought.prompt_tokens, bought.completion_tokens)
        assert hit.parse().choices[0].message.content == miss.parse().choices[0].message.content

        chunks = list(c.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                stream_options={"include_usage": True}))
        usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
        assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (0, 0)
        assert usage[0].model_extra["semcache"]["saved"]["completion_tokens"] == bought.completion_tokens


def test_hit_usage_stored_replays_the_stored_counts(sidecar):
    url = sidecar(hit_usage="stored")
    messages = [{"role": "user", "content": "how deep is the pacific ocean"}]
    with client(url) as c:
        bought = c.chat.completions.create(model=MODEL, messages=messages).usage
        served = c.chat.completions.create(model=MODEL, messages=messages).usage
    assert served.prompt_tokens == bought.prompt_tokens > 0 and not served.model_extra


def test_identical_concurrent_requests_through_the_sidecar_are_one_miss_and_coalesced_followers(sidecar):
    url = sidecar()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "name three rivers in africa"}]}
    barrier = threading.Barrier(6)

    def one(_):
        barrier.wait()
        return httpx2.post(url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-caller"}, timeout=30)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    kinds = sorted(a.headers["x-semcache"] for a in answers)
    assert kinds.count("miss") == 1 and set(kinds) <= {"miss", "follower", "hit"}, kinds
    assert all(a.headers.get("x-semcache-match") != "semantic" for a in answers)
    for a in answers:
        if a.headers["x-semcache"] != "miss":
            assert a.json()["usage"]["total_tokens"] == 0
    total = httpx2.get(url + "/semcache/stats").json()["total"]
    assert (total["misses"], total["semantic_hits"], total["coalesced"] + total["exact_hits"]) == (1, 0, 5)


def test_the_decorator_counts_followers_as_hits_not_misses(make_cache):
    """``cache_info()`` counts what the function did: one call for five concurrent identical requests (was 5 misses)."""
    import semcache

    cache = make_cache(policy=POLICY)
    calls = []
    barrier = threading.Barrier(5)

    @semcache.cached(cache=cache)
    def ask_once(prompt: str) -> str:
        calls.append(prompt)
        time.sleep(0.5)
        return "answer to " + prompt

    def one(_):
        barrier.wait()
        return ask_once("what is the boiling point of water")

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(one, range(5)))
    info = ask_once.cache_info()
    assert len(calls) == 1 and set(answers) == {"answer to what is the boiling point of water"}
    assert (info.misses, info.hits) == (1, 4)
