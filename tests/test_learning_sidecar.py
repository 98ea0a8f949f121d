"""Learning end to end: the real sidecar and model in front of the intent mock, driven by the openai SDK."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from semcache import SemanticCache
from semcache.config import Settings
from semcache.embedding.sentence import SentenceTransformerEmbedder
from semcache.engine.learning import LearningSettings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

pytestmark = [pytest.mark.server, pytest.mark.model]

ADMIN = "admin-secret"
ROWS = [
    ("I am still waiting on my card?", "card_arrival"),
    ("My card still has not arrived, what should I do?", "card_arrival"),
    ("Why has my new card not arrived yet?", "card_arrival"),
    ("Am I still waiting on my card", "card_arrival"),
    ("How do I reset my PIN?", "change_pin"),
]


def test_a_replay_through_the_sidecar_groups_answers_and_reports_its_precision(tmp_path):
    intents = tmp_path / "intents.jsonl"
    intents.write_text("\n".join(json.dumps({"text": t, "group": g}) for t, g in ROWS) + "\n")
    settings = Settings(cache_dir=str(tmp_path / "cache"), shared_cache=True)
    learning = LearningSettings(verify_fraction=1.0, min_labels=1)  # every hit re-asked: exploration labels
    with running_server(create_mock(intents=str(intents))) as mock:
        cache = SemanticCache(settings.cache_dir, embedder=SentenceTransformerEmbedder(adapter=None, backend="torch"),
                              learning=learning)
        app = create_app(settings.replace(upstream_base_url=mock + "/v1"), cache=cache,
                         environ={"SEMCACHE_ADMIN_TOKEN": ADMIN, "OPENAI_API_KEY": "sk-test"})
        try:
            with running_server(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0) as sdk:
                def ask(text):
                    raw = sdk.chat.completions.with_raw_response.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
                    return raw.headers.get("x-semcache"), raw.parse().choices[0].message.content

                statuses = [ask(text)[0] for text, _ in ROWS]
                assert statuses == ["miss", "miss", "miss", "hit", "miss"]
                entries = {e.query_text: e for e in cache.entries()}
                answer = {t: entries[t].answer_group or entries[t].id for t, _ in ROWS if t in entries}
                # later card questions got reworded answers with the same facts and joined a group (the
                # judge may call one rewording different -- it is biased that way -- but not every one)
                cards = {answer[t] for t, _ in ROWS[:3]}
                assert len(cards) < 3 and answer[ROWS[4][0]] not in cards
                served = httpx2.get(mock + "/mock/stats").json()["by_route"]["/v1/chat/completions"]
                assert served == 5  # four misses, and the one hit re-asked (verify_fraction=1)
                stats = httpx2.get(url + "/semcache/stats").json()["learning"]
                assert stats["source"] == "exploration" and stats["estimated_precision"] == 1.0
                metrics = httpx2.get(url + "/metrics").text
                assert 'semcache_estimated_precision{tenant="default"} 1.0' in metrics
                assert "semcache_estimated_precision_low" in metrics
        finally:
            cache.close()
