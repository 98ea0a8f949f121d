"""Per-request cache controls through a real sidecar: raw HTTP requests (as curl sends them) and the openai SDK's extra_headers."""

from __future__ import annotations

import httpx2
import openai
import pytest

from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server
from semcache.upstream.client import FunctionUpstream

pytestmark = pytest.mark.server

MODEL = "gpt-4o-mini"
AUTH = {"Authorization": "Bearer sk-alice", "content-type": "application/json"}


@pytest.fixture(scope="module")
def mock_url():
    with running_server(create_mock()) as url:
        yield url


@pytest.fixture
def sidecar(tmp_path, embedder, clock, mock_url):
    httpx2.post(mock_url + "/mock/reset")
    settings = Settings(cache_dir=str(tmp_path / "cache"), upstream_base_url=mock_url + "/v1")
    cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9), timer=clock)
    with running_server(create_app(settings, cache=cache, environ={})) as url:
        yield url
    cache.close()


def calls(mock_url: str) -> int:
    return httpx2.get(mock_url + "/mock/stats").json()["by_route"].get("/v1/chat/completions", 0)


def post(url: str, text: str, **headers: str) -> httpx2.Response:
    """What ``curl -H ... -d ...`` sends: a JSON body and the headers, nothing else."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    return httpx2.post(url + "/v1/chat/completions", json=body, headers={**AUTH, **headers})


def test_max_age_is_the_ttl_of_what_the_request_stores(sidecar, clock, mock_url):
    assert post(sidecar, "Short-lived?", **{"Cache-Control": "max-age=60"}).headers["x-semcache"] == "miss"
    clock.advance(59)
    assert post(sidecar, "Short-lived?").headers["x-semcache"] == "hit"
    clock.advance(2)  # 61 s: past this entry's own TTL, far inside the cache's default of 7 days
    assert post(sidecar, "Short-lived?").headers["x-semcache"] == "miss"
    assert calls(mock_url) == 2


def test_max_age_is_the_oldest_answer_the_request_accepts(sidecar, clock, mock_url):
    first = post(sidecar, "How fresh?")
    clock.advance(120)
    assert post(sidecar, "How fresh?", **{"Cache-Control": "max-age=300"}).headers["x-semcache"] == "hit"
    renewed = post(sidecar, "How fresh?", **{"Cache-Control": "max-age=100"})
    assert renewed.headers["x-semcache"] == "miss" and calls(mock_url) == 2
    assert renewed.json()["id"] != first.json()["id"]
    # The fresh answer was stored: the next request, whatever it accepts, gets it.
    assert post(sidecar, "How fresh?", **{"Cache-Control": "max-age=10"}).headers["x-semcache"] == "hit"
    assert calls(mock_url) == 2


def test_max_age_zero_neither_reads_nor_stores_and_no_cache_no_store_still_work(sidecar, mock_url):
    post(sidecar, "Zero?")
    assert post(sidecar, "Zero?", **{"Cache-Control": "max-age=0"}).headers["x-semcache"] == "bypass"
    assert post(sidecar, "Never kept?", **{"Cache-Control": "max-age=0"}).headers["x-semcache"] == "bypass"
    assert post(sidecar, "Never kept?").headers["x-semcache"] == "miss"
    assert post(sidecar, "Zero?", **{"Cache-Control": "no-cache"}).headers["x-semcache"] == "bypass"
    assert post(sidecar, "Not stored?", **{"Cache-Control": "no-store"}).headers["x-semcache"] == "miss"
    assert post(sidecar, "Not stored?").headers["x-semcache"] == "miss"
    assert calls(mock_url) == 7  # every request above went upstream


@pytest.mark.parametrize("header, value", [("Cache-Control", "max-age=soon"), ("Cache-Control", "max-age=-5"),
                                           ("Cache-Control", "max-age=1, max-age=2"), ("x-semcache-namespace", "two words"),
                                           ("x-semcache-bucket", "b" * 200)])
def test_a_bad_cache_header_is_a_400_naming_it(sidecar, header, value, mock_url):
    answer = post(sidecar, "Bad header?", **{header: value})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == header.lower() and calls(mock_url) == 0


def test_a_namespace_joins_the_partition(sidecar, mock_url):
    assert post(sidecar, "Which namespace?", **{"x-semcache-namespace": "billing-bot"}).headers["x-semcache"] == "miss"
    assert post(sidecar, "Which namespace?", **{"x-semcache-namespace": "support-bot"}).headers["x-semcache"] == "miss"
    assert post(sidecar, "Which namespace?").headers["x-semcache"] == "miss"
    hit = post(sidecar, "which namespace", **{"x-semcache-namespace": "billing-bot"})
    assert hit.headers["x-semcache"] == "hit" and hit.headers["x-semcache-match"] == "semantic"  # within it, as ever
    assert calls(mock_url) == 3


def test_buckets_keep_deliberately_different_answers(sidecar, mock_url):
    answers = {post(sidecar, "Tell me a joke.", **{"x-semcache-bucket": str(b)}).json()["id"] for b in range(3)}
    assert len(answers) == 3 and calls(mock_url) == 3
    again = post(sidecar, "Tell me a joke.", **{"x-semcache-bucket": "1"})
    assert again.headers["x-semcache"] == "hit" and calls(mock_url) == 3


def test_the_openai_sdk_sends_them_as_extra_headers(sidecar, clock, mock_url):
    with openai.OpenAI(base_url=sidecar + "/v1", api_key="sk-alice", max_retries=0) as client:
        def ask(**headers):
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "SDK question?"}], extra_headers=headers)
            return raw.headers["x-semcache"]

        assert ask(**{"x-semcache-namespace": "app-1", "Cache-Control": "max-age=30"}) == "miss"
        assert ask(**{"x-semcache-namespace": "app-1"}) == "hit"
        assert ask(**{"x-semcache-namespace": "app-2"}) == "miss"
        clock.advance(31)
        assert ask(**{"x-semcache-namespace": "app-1"}) == "miss"  # its own 30 s TTL is over
    assert calls(mock_url) == 3


def test_the_partition_headers_never_reach_the_upstream(tmp_path, embedder, clock):
    seen: list[dict] = []

    def handler(request, kind):
        seen.append(request)
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    settings = Settings(cache_dir=str(tmp_path / "c"))
    cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9), timer=clock)
    with running_server(create_app(settings, cache=cache, upstream=FunctionUpstream(handler), environ={})) as url:
        post(url, "Private?", **{"x-semcache-namespace": "ns", "x-semcache-bucket": "2"})
    cache.close()
    assert seen == [{"model": MODEL, "messages": [{"role": "user", "content": "Private?"}]}]
