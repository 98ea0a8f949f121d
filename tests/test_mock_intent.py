"""The intent mock: one answer per group of a labelled file, reworded per request, over a real server."""

from __future__ import annotations

import json
import re

import openai
import pytest

from semcache.errors import ConfigError
from semcache.testing.mock import create_app
from semcache.testing.mock_intent import IntentAnswers
from semcache.testing.serving import running_server

ROWS = [
    {"text": "I am still waiting on my card?", "group": "card_arrival"},
    {"text": "My card has not arrived yet, what now?", "group": "card_arrival"},
    {"text": "How long does card delivery take?", "group": "card_delivery_estimate"},
    {"text": "When will my new card be delivered?", "group": "card_delivery_estimate"},
    {"text": "My card does not work at the shop", "group": "card_not_working"},
]
_FACT = re.compile(r"\$\d+\.\d\d|HC-\d{4}|\b\d+ (?:working|business) days|[A-Z][a-z]+ > [A-Z][a-z ]+?(?= in|\.|$)")


@pytest.fixture()
def intents_file(tmp_path):
    path = tmp_path / "intents.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return path


def facts(text: str) -> set[str]:
    return set(_FACT.findall(text))


def test_one_group_gets_one_answer_in_many_wordings(intents_file):
    intents = IntentAnswers.from_file(intents_file)
    answers = {intents.answer(ROWS[i % 2]["text"], f"request-{i}") for i in range(12)}
    assert len(answers) >= 6  # reworded per request
    assert len({frozenset(facts(a)) for a in answers}) == 1  # but always the same facts
    assert all("card arrival" in a for a in answers)
    assert intents.answer(ROWS[0]["text"], "x") == intents.answer("  i am STILL waiting on my card? ", "x")
    assert intents.answer("what is the capital of France?", "x") is None


def test_neighbouring_groups_differ_in_topic_and_facts():
    intents = IntentAnswers({"a": "card_arrival"})
    groups = [f"intent_{i}" for i in range(60)]
    fact_sets = [frozenset(intents.facts(g).items()) for g in groups]
    assert len(set(fact_sets)) == len(groups)
    # most groups carry a number or a reference the judge can check, some carry none
    numbered = sum(any(k in intents.facts(g) for k in ("days", "fee", "article")) for g in groups)
    assert 0.5 * len(groups) < numbered < len(groups)


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "group": "x"}\n{"text": "b"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: .*'group'"):
        IntentAnswers.from_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        IntentAnswers.from_file(tmp_path / "missing.jsonl")


def test_the_mock_server_answers_by_intent_through_the_sdk(intents_file):
    with running_server(create_app(intents=str(intents_file))) as base, \
            openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0) as client:
        def ask(text, **extra):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **extra)
            return reply.choices[0].message.content

        first, second = ask(ROWS[2]["text"]), ask(ROWS[3]["text"])
        assert first == ask(ROWS[2]["text"])  # deterministic per request
        assert first != second and facts(first) == facts(second)
        assert "card delivery estimate" in second
        other = ask(ROWS[4]["text"])
        assert "card not working" in other and "card delivery estimate" not in other
        unknown = ask("Tell me about rivers")  # not in the file: the mock's usual hashed sentence
        assert not facts(unknown) and " team" not in unknown
