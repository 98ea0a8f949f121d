"""Alerts reach a webhook once per event across replicas: two sidecars on one cache directory, the bundled
mock upstream (with its scripted faults), the openai SDK as client, a real HTTP receiver on loopback."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.errors import ConfigError
from semcache.server import create_app
from semcache.server.alerts import Alerter, payload
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

pytestmark = pytest.mark.server

MODEL = "gpt-4o-mini"


class Receiver:
    """A webhook on loopback that keeps every JSON body POSTed to it; ``status`` is what it answers."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        self.lock = threading.Lock()

        async def hook(request: Request) -> JSONResponse:
            body = await request.json()
            with self.lock:
                self.bodies.append(body)
            return JSONResponse({"ok": True}, status_code=self.status)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def events(self) -> list[str]:
        with self.lock:
            return [b["semcache"]["event"] for b in self.bodies]


@pytest.fixture
def receiver():
    hook = Receiver()
    with running_server(hook.app) as url:
        hook.url = url + "/hook"
        yield hook


@pytest.fixture
def replicas(tmp_path, embedder, receiver):
    """Start N sidecars on one cache directory (and one budget ledger) against a mock upstream with ``faults``."""
    stack = []

    def start(n: int = 2, *, faults: str = "", **options):
        mock = running_server(create_mock(faults=faults))
        mock_url = mock.__enter__()
        stack.append((mock, None))
        urls = []
        for _ in range(n):
            settings = Settings(cache_dir=str(tmp_path / "shared"), upstream_base_url=mock_url + "/v1",
                                alert_webhook_url=receiver.url, **options)
            cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9), flush_interval=0)
            server = running_server(create_app(settings, cache=cache, environ={"OPENAI_API_KEY": "sk-own"}))
            urls.append(server.__enter__())
            stack.append((server, cache))
        return urls

    def stop():  # closing a sidecar sends what its alerter still holds
        while stack:
            server, cache = stack.pop()
            server.__exit__(None, None, None)
            if cache is not None:
                cache.close()

    start.stop = stop
    yield start
    stop()


def ask(url: str, text: str, **extra):
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-own", max_retries=0)
    try:
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **extra)
    finally:
        client.close()


def test_the_budget_alert_and_the_budget_stop_are_posted_once_across_two_replicas(replicas, receiver):
    urls = replicas(budget_tokens_per_day=400)
    refused = {url: 0 for url in urls}
    for i in range(40):  # distinct questions: every one a miss, spending ~50 tokens, alternating replicas
        url = urls[i % 2]
        try:
            ask(url, f"question number {i} about budgets", max_tokens=16)
        except openai.RateLimitError as exc:
            assert exc.code == "budget_exceeded"
            refused[url] += 1
    assert all(count >= 2 for count in refused.values()), refused  # both replicas stopped, more than once each
    replicas.stop()
    assert sorted(receiver.events()) == ["budget_alert", "budget_stop"]
    alert = next(b for b in receiver.bodies if b["semcache"]["event"] == "budget_alert")
    assert alert["semcache"]["budget"] == "tokens_per_day" and alert["semcache"]["limit"] == "400"
    assert alert["text"].startswith("semcache: budget tokens_per_day is") and "sk-own" not in str(receiver.bodies)
    assert {f["title"] for f in alert["attachments"][0]["fields"]} >= {"event", "budget", "spent", "host", "time"}


def test_quota_exhaustion_is_posted_once_across_two_replicas(replicas, receiver):
    urls = replicas(faults="quota:100%")
    for i in range(6):
        with pytest.raises(openai.RateLimitError) as failure:
            ask(urls[i % 2], f"question {i} without quota")
        assert failure.value.code == "insufficient_quota"
    replicas.stop()
    assert receiver.events() == ["quota_exhausted"]
    assert "insufficient_quota" in receiver.bodies[0]["text"]


def test_a_run_of_upstream_429s_is_posted_once_per_window(replicas, receiver):
    # every attempt answered 429 with retry-after 0; three attempts a request: 4 requests = 12 429s over two replicas
    urls = replicas(faults="429:100%:0", max_attempts=3, alert_429_count=5, alert_429_window=1e9)
    for i in range(4):
        with pytest.raises(openai.RateLimitError):
            ask(urls[i % 2], f"question {i} in a storm")
    replicas.stop()
    assert receiver.events() == ["rate_limited"]
    assert receiver.bodies[0]["semcache"]["threshold"] == "5 in 1e+09 s"


def test_each_format_is_the_shape_its_bot_takes():
    fields = {"event": "budget_stop", "budget": "usd_per_day"}
    assert payload("slack", "spent", fields)["text"] == "spent"
    assert payload("dingtalk", "spent", fields) == {"msgtype": "text", "text": {"content": "spent\nevent: budget_stop\nbudget: usd_per_day"}}
    assert payload("wecom", "spent", fields) == payload("dingtalk", "spent", fields)
    assert payload("feishu", "spent", fields) == {"msg_type": "text", "content": {"text": "spent\nevent: budget_stop\nbudget: usd_per_day"}}
    with pytest.raises(ValueError):
        payload("teams", "spent", fields)


def test_feishu_alert_reaches_the_receiver_and_a_dead_webhook_fails_no_request(receiver):
    alerter = Alerter(url=receiver.url, fmt="feishu")
    alerter.listen("quota_exhausted", 1, "", MODEL, None)
    alerter.listen("quota_exhausted", 1, "", MODEL, None)  # the same event: once
    alerter.close()
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["msg_type"] == "text"
    assert "insufficient_quota" in receiver.bodies[0]["content"]["text"] and alerter.counts() == ({"quota_exhausted": 1}, {})

    receiver.status = 500
    refused = Alerter(url=receiver.url, fmt="slack")
    refused.listen("quota_exhausted", 1, "", MODEL, None)
    refused.close()
    assert refused.counts() == ({"quota_exhausted": 1}, {"quota_exhausted": 1})

    dead = Alerter(url="http://127.0.0.1:9/hook", timeout=1.0)  # port 9 (discard): nothing listens on loopback
    started = time.perf_counter()
    dead.listen("quota_exhausted", 1, "", MODEL, None)
    assert time.perf_counter() - started < 0.05  # the counting thread only queues
    dead.close()
    assert dead.counts() == ({"quota_exhausted": 1}, {"quota_exhausted": 1})


def test_the_webhook_settings_are_checked_and_the_url_stays_secret():
    secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    settings = Settings(alert_webhook_url=secret)
    assert "XXXXSECRET" not in repr(settings) and "XXXXSECRET" not in repr(Alerter.from_settings(settings))
    with pytest.raises(ConfigError, match="alert_webhook_url") as refused:
        Settings(alert_webhook_url="ftp://example.com/XXXXSECRET")
    assert "XXXXSECRET" not in str(refused.value)
    with pytest.raises(ConfigError, match="alert_format"):
        Settings(alert_format="teams")
    with pytest.raises(ConfigError, match="alert_429_count"):
        Settings(alert_429_count=0)
