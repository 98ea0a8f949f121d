"""The token estimate reads the field its route reads, and never fails a request (#18 item 1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from semcache.upstream.tokens import count_message_tokens, count_tokens, estimate_request_tokens

MODEL = "gpt-4o-mini"
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["chat", "completions", "responses", "embeddings", None]),
       body=st.dictionaries(st.sampled_from(["model", "messages", "prompt", "input", "instructions", "max_tokens",
                                             "max_completion_tokens", "max_output_tokens"]), JSON, max_size=6))
def test_the_estimate_never_raises_for_any_json(kind, body):
    prompt, completion = estimate_request_tokens(body, 256, kind=kind)
    assert prompt >= 0 and (completion == 0 if kind == "embeddings" else completion >= 1)


@pytest.mark.parametrize("odd", [None, True, "s", 5, [1], {"a": 1}])
def test_each_route_is_estimated_from_its_own_field(odd):
    embeddings = {"model": MODEL, "input": "hello world", "messages": odd}
    assert estimate_request_tokens(embeddings, kind="embeddings") == (count_tokens("hello world", MODEL), 0)
    completions = {"model": MODEL, "prompt": "hello world", "messages": odd, "max_tokens": 7}
    assert estimate_request_tokens(completions, kind="completions") == (count_tokens("hello world", MODEL), 7)


def test_token_ids_count_one_each_and_messages_as_before():
    assert estimate_request_tokens({"model": MODEL, "input": [1, 2, 3]}, kind="embeddings") == (3, 0)
    messages = [{"role": "user", "content": "hello"}]
    assert estimate_request_tokens({"model": MODEL, "messages": messages}) == (count_message_tokens(messages, MODEL), 256)
    assert estimate_request_tokens({"model": MODEL, "messages": messages, "max_tokens": True}) == (count_message_tokens(messages, MODEL), 256)
