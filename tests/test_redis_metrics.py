"""``/metrics`` while Redis is down (#18 item 6): the process's own counters, ``semcache_store_up 0``, never a 503.

Before, the scrape read the counters from Redis and answered 503 during an outage, so Prometheus
lost every counter exactly then. Now it answers the counters as last read plus this process's
counts since (so a counter never goes down, and none jumps when Redis is back), marked by the
``semcache_store_up`` gauge. A real redis-server, a real uvicorn sidecar, the mock upstream.
"""

from __future__ import annotations

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WordEmbedder
from redis_server import start_redis  # noqa: F401  (fixture)
from semcache import MatchPolicy
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server
from semcache.wiring import cache_from_settings

pytestmark = [pytest.mark.server, pytest.mark.slow]


def scrape(url: str) -> dict[str, float]:
    answer = httpx2.get(url + "/metrics", timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    return {sample.name: sample.value for family in text_string_to_metric_families(answer.text)
            for sample in family.samples if not sample.labels}


def test_metrics_during_a_redis_outage_are_the_processs_own_and_marked(start_redis, tmp_path):  # noqa: F811
    server = start_redis(persistence=True)
    with running_server(create_mock()) as mock:
        settings = Settings(cache_dir=str(tmp_path / "c"), store=server.url, upstream_base_url=mock + "/v1", snapshot_file="")
        cache = cache_from_settings(settings, embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9), environ={})
        try:
            with running_server(create_app(settings, cache=cache, environ={})) as url:
                def ask(text: str) -> httpx2.Response:
                    return httpx2.post(url + "/v1/chat/completions", headers={"authorization": "Bearer sk-caller"}, timeout=30,
                                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})

                assert ask("what is the capital of chile").headers["x-semcache"] == "miss"
                assert ask("what is the capital of chile").headers["x-semcache"] == "hit"
                up = scrape(url)
                assert up["semcache_store_up"] == 1 and up["semcache_requests_total"] == 2

                server.stop()
                assert ask("what is the capital of chile").headers["x-semcache"] == "hit"  # from this process's copy
                down = scrape(url)  # before: 503
                assert down["semcache_store_up"] == 0
                assert down["semcache_requests_total"] == 3 and down["semcache_exact_hits_total"] == 2
                assert down["semcache_entries"] == 1

                server.start()
                back = scrape(url)
                assert back["semcache_store_up"] == 1 and back["semcache_requests_total"] == 3  # written once it was back
        finally:
            cache.close()
