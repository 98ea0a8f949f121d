"""The Prometheus contract: a real sidecar (the packaged model, the bundled mock upstream, uvicorn on
loopback, the openai SDK as client) exports what docs/metrics.md lists and what the Grafana dashboard
in deploy/grafana/semcache.json queries; names follow Prometheus' conventions; each replica exports its
own counts; ``/metrics`` answers while the store is down; hits carry their score and threshold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import openai
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from redis_server import start_redis  # noqa: F401  (fixture)
from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.keys import tenant_from_api_key
from semcache.server import create_app
from semcache.storage.redis import RedisStore
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

from servers import Sidecars

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "semcache.json"
MODEL = "gpt-4o-mini"
KEY = "sk-metrics-test"
# Grafana's variables, as Grafana substitutes them before Prometheus parses a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s", "$tenant": ".*", "$model": ".*"}


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def mock_url():
    with running_server(create_mock()) as url:
        yield url


@pytest.fixture(scope="module")
def real_sidecar(mock_url, tmp_path_factory):
    """The sidecar as `semcache serve` builds it (the packaged model, the default policy) after some traffic."""
    settings = Settings(cache_dir=str(tmp_path_factory.mktemp("metrics")), upstream_base_url=mock_url + "/v1")
    app = create_app(settings, environ={"SEMCACHE_ADMIN_TOKEN": "admin"})
    with running_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        traffic = {}
        for name, text in (("miss", "What is the capital of France?"), ("exact", "What is the capital of France?"),
                           ("semantic", "Which city is France's capital?"), ("other", "How tall is the Eiffel tower?")):
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ask(text))
            traffic[name] = raw.headers
        with pytest.raises(openai.BadRequestError):  # an error answer is counted too
            client.chat.completions.create(model=MODEL, messages=ask("too long"), max_tokens=-1)
        yield url, app, traffic
        client.close()


def scrape(url: str) -> dict:
    """Return {family name: family} of one /metrics scrape."""
    answer = httpx2.get(url + "/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def series_names(families: dict) -> set[str]:
    """Every series name a PromQL query can select from these families (declared ones without samples too)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
    names = set()
    for name, family in families.items():
        names.update(name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def value(families: dict, sample_name: str, **labels) -> float:
    found = [s.value for f in families.values() for s in f.samples
             if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found)


def selectors(node) -> list[str]:
    """The metric names a parsed PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        return [node.name]
    if isinstance(node, promql_parser.MatrixSelector):
        return selectors(node.vector_selector)
    found = []
    for attribute in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            found += selectors(child)
    for child in getattr(node, "args", None) or ():
        found += selectors(child)
    return found


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) >= 15
    return queries


def substitute(query: str) -> str:
    for variable, replacement in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        query = query.replace(variable, replacement)
    assert "$" not in query, f"a Grafana variable the test does not know: {query}"
    return query


def test_every_metric_the_dashboard_queries_is_exported(real_sidecar):
    url, _, _ = real_sidecar
    exported = series_names(scrape(url))
    dashboard = json.loads(DASHBOARD.read_text())
    for query in dashboard_queries():
        names = selectors(promql_parser.parse(substitute(query)))  # raises on a query Prometheus would refuse
        assert names, f"no metric in {query}"
        missing = [n for n in names if n not in exported]
        assert not missing, f"the dashboard queries {missing}, which /metrics does not export ({query})"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label): Grafana's, not PromQL
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"]).groups()
            assert metric in exported and label in {k for f in scrape(url).values() for s in f.samples for k in s.labels}


def test_the_scrape_counts_the_traffic_by_route_tenant_model_and_result(real_sidecar):
    url, _, traffic = real_sidecar
    assert traffic["miss"]["x-semcache"] == "miss" and traffic["exact"]["x-semcache-match"] == "exact"
    families = scrape(url)
    labels = {"route": "/v1/chat/completions", "tenant": tenant_from_api_key(KEY)[:10], "model": MODEL}
    assert value(families, "semcache_requests_total", **labels, result="exact") == 1
    assert value(families, "semcache_requests_total", **labels, result="error") == 1
    misses = sum(1 for h in traffic.values() if h["x-semcache"] == "miss")
    assert value(families, "semcache_requests_total", **labels, result="miss") == misses
    assert value(families, "semcache_upstream_calls_total", tenant=labels["tenant"], model=MODEL) == misses
    assert value(families, "semcache_http_responses_total", route="/v1/chat/completions", status="400") == 1
    assert value(families, "semcache_tokens_saved_total", type="completion") > 0
    assert value(families, "semcache_cost_saved_dollars_total") > 0
    # latency histograms: the real model's calls, every lookup, every upstream call
    assert value(families, "semcache_embedding_duration_seconds_count") >= 2
    assert value(families, "semcache_lookup_duration_seconds_count") == len(traffic)
    assert value(families, "semcache_upstream_duration_seconds_count", model=MODEL, outcome="ok") == misses
    assert value(families, "semcache_request_duration_seconds_count", route="/v1/chat/completions") == len(traffic) + 1
    info = [s.labels for f in families.values() for s in f.samples if s.name == "semcache_info"]
    assert len(info) == 1 and info[0]["store"] == "disk" and info[0]["policy"] == "cosine" and info[0]["version"]
    assert value(families, "semcache_store_up") == 1 and value(families, "semcache_entries") == misses
    assert KEY not in httpx2.get(url + "/metrics").text


def test_names_units_and_help_follow_prometheus_conventions(real_sidecar):
    families = scrape(real_sidecar[0])
    assert "semcache_hit_rate" not in families  # a lifetime ratio: rates are PromQL's job
    assert "semcache_ratelimit_wait_seconds" in families and "semcache_ratelimit_wait_s" not in families
    for name, family in families.items():
        assert re.fullmatch(r"semcache_[a-z_]+", name), name
        assert len(family.documentation) >= 30, f"{name}: HELP says too little: {family.documentation!r}"
        assert not re.search(r"_(s|ms|secs|usd|kb|mb)$", name), f"{name}: units are seconds, bytes or dollars, spelled out"
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if "duration" in name:
            assert family.type == "histogram" and name.endswith("_seconds"), name
        for sample in family.samples:
            assert set(sample.labels) <= {"route", "tenant", "model", "result", "status", "outcome", "type", "kind", "error",
                                          "event", "budget", "le", "version", "store", "policy", "threshold", "embed_backend"}


def test_hits_carry_the_score_that_decided_them_and_the_threshold(real_sidecar):
    _, app, traffic = real_sidecar
    threshold = app.state.sidecar.cache.policy.threshold
    semantic = traffic["semantic"]
    assert (semantic["x-semcache"], semantic["x-semcache-match"]) == ("hit", "semantic")
    score, cosine = float(semantic["x-semcache-score"]), float(semantic["x-semcache-similarity"])
    assert float(semantic["x-semcache-threshold"]) == pytest.approx(threshold) and score >= threshold
    assert -1 <= cosine <= 1 and score == pytest.approx(cosine, abs=1e-4)  # the default policy's score is the cosine
    assert "x-semcache-score" not in traffic["exact"] and "x-semcache-score" not in traffic["miss"]


@pytest.fixture
def word_sidecars(tmp_path, embedder, mock_url):
    """Two sidecars sharing one cache directory (replicas on one store), the fake embedder."""
    sidecars = Sidecars()

    def start(**options):
        settings = Settings(cache_dir=str(tmp_path / "shared"), upstream_base_url=mock_url + "/v1", **options)
        return sidecars.start(settings, environ={}, embedder=embedder, policy=MatchPolicy.cosine(0.9), flush_interval=0)

    yield start
    sidecars.close()


def test_each_replica_exports_its_own_counts_and_stats_keep_the_totals(word_sidecars):
    first, second = word_sidecars(), word_sidecars()
    for url, texts in ((first, ["one question", "one question", "another one"]), (second, ["one question", "a third"])):
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        for text in texts:
            client.chat.completions.create(model=MODEL, messages=ask(text))
        client.close()
    counts = [value(scrape(url), "semcache_requests_total") for url in (first, second)]
    assert counts == [3, 2]  # each its own: summing the pods gives the cluster's 5
    assert value(scrape(second), "semcache_requests_total", result="exact") == 1  # the first one's answer, shared
    httpx2.get(second + "/semcache/stats")  # writes the second's counts to the store (its flusher would, within a second)
    assert httpx2.get(first + "/semcache/stats").json()["total"]["requests"] == 5  # the cluster's, from the store


def test_metrics_answer_while_the_store_is_down(start_redis, embedder, mock_url, tmp_path):  # noqa: F811
    server = start_redis()
    store = RedisStore.from_url(server.url, prefix="metrics-down")
    settings = Settings(cache_dir=str(tmp_path), store=server.url, upstream_base_url=mock_url + "/v1")
    cache = SemanticCache(store=store, embedder=embedder, policy=MatchPolicy.cosine(0.9), flush_interval=0)
    try:
        with running_server(create_app(settings, cache=cache, environ={})) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
            client.chat.completions.create(model=MODEL, messages=ask("counted before the outage"))
            client.close()
            assert value(scrape(url), "semcache_store_up") == 1
            server.stop()
            families = scrape(url)
            assert value(families, "semcache_store_up") == 0
            assert value(families, "semcache_requests_total", result="miss") == 1  # this process's own counts, from memory
            info = [s.labels for f in families.values() for s in f.samples if s.name == "semcache_info"][0]
            assert info["store"] == "redis" and server.url not in json.dumps(info)
    finally:
        if server.process is None or server.process.poll() is not None:
            server.start()  # back, so the cache can write what it holds and close
        cache.close()
