"""The answer judge: pure logic, exercised with a tiny deterministic embedder."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import WordEmbedder
from semcache.errors import ConfigError
from semcache.matching.answers import AnswerJudge, answer_text


def chat(content=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def test_answer_text_reads_every_response_shape():
    assert answer_text(chat("Paris.")) == ("Paris.", True)
    assert answer_text(chat("")) == (None, True)
    call = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]
    text, prose = answer_text(chat(None, call))
    assert not prose and "weather" in text and "c1" not in text  # call ids differ per request; the call does not
    assert answer_text({"choices": [{"text": " hi there"}]}) == (" hi there", True)
    assert answer_text({"output": [{"content": [{"type": "output_text", "text": "A"}, {"text": "B"}]}]}) == ("AB", True)
    assert answer_text("plain") == ("plain", True)
    assert answer_text({"b": 1, "a": [2]}) == ('{"a":[2],"b":1}', False)
    assert answer_text(None) == (None, False)


def test_short_answers_are_the_same_only_when_equal():
    judge = AnswerJudge()
    assert judge.judge("Paris.", "paris").same
    assert not judge.judge("Yes", "No").same
    verdict = judge.judge("It is Paris", "It is Lyon")
    assert not verdict.same and verdict.reason == "short-differs"


def test_long_answers_need_close_vectors_and_no_contradiction():
    embed = WordEmbedder().embed
    judge = AnswerJudge(same_above=0.8)
    a = "Your card usually arrives within 5 working days after you order it in the app"
    b = "After you order it in the app, your card usually arrives within 5 working days"
    c = "Your card usually arrives within 9 working days after you order it in the app"
    d = "To reset your PIN open the security menu and follow the steps shown on screen"
    same, contradicted, unrelated = judge.judge_texts(a, [b, c, d], embed)
    assert same.same and same.similarity > 0.99
    assert not contradicted.same and contradicted.reason == "contradicts:numbers"
    assert not unrelated.same and unrelated.similarity < 0.8
    assert judge.judge(a, b).reason == "no-vectors"  # unsure without vectors: different


def test_structured_answers_compare_exactly():
    judge = AnswerJudge()
    assert judge.judge('{"a":1}', '{"a":1}', prose=False).same
    assert not judge.judge('{"a":1}', '{"a":2}', prose=False).same
    assert not judge.judge(None, "text").same


def test_embedding_only_what_rule_five_needs():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.eye(len(texts), 8, dtype=np.float32)

    AnswerJudge().judge_texts("ok", ["yes", "no"], embed)
    assert calls == []
    long = "one two three four five six seven eight"
    AnswerJudge().judge_texts(long, [long + " nine", "short one"], embed)
    assert calls == [[long, long + " nine"]]


@pytest.mark.parametrize("bad", [{"same_above": 1.5}, {"short_words": -1}])
def test_bad_settings_are_named(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        AnswerJudge(**bad)
