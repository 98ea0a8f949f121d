"""Stress the sidecar: 64 concurrent clients mix hits, misses, streams and invalidations for ~12 s.

The sidecar is ``create_app(settings)`` as ``semcache serve`` builds it: the real packaged model
behind the batching embedder, the default policy, its own cache directory; the upstream is the
real mock on loopback. The property: every answer is a 200 (the admin's deletions included),
nothing is a 5xx, and neither semcache's nor uvicorn's nor asyncio's log has an error or a
traceback. The counts are printed so a run can be quoted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter

import httpx2
import pytest

from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

pytestmark = [pytest.mark.server, pytest.mark.model, pytest.mark.slow]

CLIENTS = 64
SECONDS = 12.0
ADMIN = "stress-admin"
MODEL = "gpt-4o-mini"
TOPICS = ["the capital of France", "the boiling point of water", "the speed of light", "the tallest mountain on Earth",
          "the largest ocean", "the author of Hamlet", "the chemical symbol for gold", "the square root of 144",
          "the longest river in Africa", "the first man on the Moon", "the currency of Japan", "the freezing point of water"]
FORMS = ["What is {}?", "Tell me {}.", "Do you know {}?", "what is {}", "Quick question: what is {}?"]


class Records(logging.Handler):
    """Keep every record at WARNING or above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs():
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("semcache", "uvicorn", "uvicorn.error", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


async def client_loop(number: int, url: str, deadline: float, statuses: Counter, kinds: Counter, entries: list[str]) -> None:
    rng = random.Random(number)
    tenant_key = f"sk-stress-{number % 4}"  # four tenants: their partitions never share answers
    headers = {"Authorization": f"Bearer {tenant_key}"}
    async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < 0.05 and entries:  # the admin invalidates a recent answer (or, rarely, everything)
                query = "all=true" if rng.random() < 0.05 else f"id={rng.choice(entries[-50:])}"
                answer = await http.delete(f"/semcache/entries?{query}", headers={"Authorization": f"Bearer {ADMIN}"})
                kind = "invalidate"
            elif roll < 0.08:
                answer = await http.get(rng.choice(["/semcache/stats", "/healthz", "/readyz", "/metrics", "/v1/models"]),
                                        headers=headers)
                kind = "other"
            else:
                if roll < 0.30:  # a question nobody asked before: a miss
                    text, kind = f"What is the meaning of word number {number}-{rng.randrange(10**9)}?", "new"
                else:  # one of a few questions, in a few phrasings: exact and semantic hits
                    text, kind = rng.choice(FORMS).format(rng.choice(TOPICS)), "repeat"
                stream = rng.random() < 0.15
                body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}
                answer = await http.post("/v1/chat/completions", json=body, headers=headers)
                kind += "-stream" if stream else ""
                if answer.status_code == 200 and "x-semcache-entry-id" in answer.headers:
                    entries.append(answer.headers["x-semcache-entry-id"])
                kinds[(kind, answer.headers.get("x-semcache", "-"))] += 1
            statuses[(kind.split("-")[0], answer.status_code)] += 1


def test_64_clients_mixing_hits_misses_and_invalidations(tmp_path, logs, capsys):
    with running_server(create_mock(latency_ms=20)) as mock:
        settings = Settings(cache_dir=str(tmp_path / "cache"), upstream_base_url=mock + "/v1")
        app = create_app(settings, environ={"OPENAI_API_KEY": "sk-stress-own", "SEMCACHE_ADMIN_TOKEN": ADMIN})
        statuses: Counter = Counter()
        kinds: Counter = Counter()
        with running_server(app) as url:
            async def run() -> None:
                deadline = time.monotonic() + SECONDS
                entries: list[str] = []
                await asyncio.gather(*(client_loop(n, url, deadline, statuses, kinds, entries) for n in range(CLIENTS)))

            started = time.monotonic()
            asyncio.run(run())
            elapsed = time.monotonic() - started
            stats = httpx2.get(url + "/semcache/stats").json()["total"]
        upstream = httpx2.get(mock + "/mock/stats").json()
    total = sum(statuses.values())
    with capsys.disabled():
        print(f"\nsidecar stress: {total} requests from {CLIENTS} clients in {elapsed:.1f}s ({total / elapsed:.0f}/s); "
              f"statuses {dict(sorted(statuses.items()))}")
        print(f"  answers {dict(sorted(kinds.items()))}")
        print(f"  engine: requests {stats['requests']}, exact hits {stats['exact_hits']}, semantic hits {stats['semantic_hits']}, "
              f"misses {stats['misses']}; upstream served {upstream['requests']}")
        for record in logs.records:
            print(f"  log {record.levelname} {record.name}: {record.getMessage()[:200]}")
    assert total >= 2 * CLIENTS  # every client got answers, on a busy machine too
    assert {status for _, status in statuses} == {200}, statuses
    assert any(kind.startswith("invalidate") for kind, _ in statuses) and any(s == "hit" for (_, s) in kinds)
    problems = [r for r in logs.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == [], [f"{r.name}: {r.getMessage()}" for r in problems]
