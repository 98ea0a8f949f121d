"""A hanging upstream (#18 item 9): a non-streamed attempt waits ``first_byte_timeout`` for the answer to begin,
the whole call at most ``deadline``; then the caller gets a 504 in OpenAI's shape, not 120 s later.

The bundled mock's ``slow`` fault holds every answer ``slow_s`` seconds before its first byte (a hang
from the client's side); the client is the openai SDK through a real uvicorn sidecar.
"""

from __future__ import annotations

import time

import httpx2
import openai
import pytest

from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

pytestmark = pytest.mark.server


def test_the_defaults_bound_a_hang_well_under_the_old_120_seconds():
    """Before: upstream_timeout 60 s per attempt and a 120 s deadline held the caller 120 s; now 30 s + 60 s."""
    defaults = Settings()
    assert defaults.first_byte_timeout == 30.0 and defaults.deadline == 60.0
    assert defaults.first_byte_timeout < defaults.deadline <= defaults.upstream_timeout


@pytest.fixture(scope="module")
def hanging_mock():
    with running_server(create_mock(faults="slow:100%", slow_s=60)) as url:
        yield url


def test_a_hanging_upstream_is_a_504_after_the_deadline_with_retries_on_the_way(tmp_path, hanging_mock):
    settings = Settings(cache_dir=str(tmp_path / "c"), upstream_base_url=hanging_mock + "/v1", first_byte_timeout=1.0,
                        deadline=2.5, max_attempts=5)
    with SemanticCache(settings.cache_dir, embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9)) as cache, \
            running_server(create_app(settings, cache=cache, environ={})) as url:
        before = httpx2.get(hanging_mock + "/mock/stats").json()["requests"]
        started = time.monotonic()
        with openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0, timeout=30) as client:
            with pytest.raises(openai.APIStatusError) as failed:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "are you there"}])
        elapsed = time.monotonic() - started
        assert failed.value.status_code == 504 and failed.value.code == "upstream_timeout"
        assert 2.0 <= elapsed < 6.0, elapsed  # the deadline, not 60 s of hang
        attempts = httpx2.get(hanging_mock + "/mock/stats").json()["requests"] - before
        assert attempts >= 2  # the first attempt timed out at 1 s and was retried within the deadline
        total = cache.stats()["total"]
        assert total["errors.UpstreamTimeout"] >= 1 and total["upstream_attempts"] == attempts


def test_a_streamed_call_is_not_cut_by_the_first_byte_timeout(tmp_path):
    """A stream's chunks may come slowly: only ``upstream_timeout`` bounds the silence between two of them."""
    with running_server(create_mock(latency_ms=1500)) as mock:
        settings = Settings(cache_dir=str(tmp_path / "c"), upstream_base_url=mock + "/v1", first_byte_timeout=0.5,
                            deadline=10)
        with SemanticCache(settings.cache_dir, embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9)) as cache, \
                running_server(create_app(settings, cache=cache, environ={})) as url, \
                openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0, timeout=30) as client:
            chunks = list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                         messages=[{"role": "user", "content": "stream slowly"}]))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            with pytest.raises(openai.APIStatusError) as cut:  # the same latency, not streamed: over 0.5 s
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "answer slowly"}])
            assert cut.value.status_code == 504
