"""keys.normalize: what may share an answer (partition), what is compared (query text)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.errors import RequestError
from semcache.keys import normalize, tenant_from_api_key

BASE = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "assistant", "content": "Shakespeare."},
        {"role": "user", "content": "When was he born?"},
    ],
    "temperature": 0,
}

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def _with(**changes):
    request = copy.deepcopy(BASE)
    request.update(changes)
    return request


def _earlier_turn(text):
    request = copy.deepcopy(BASE)
    request["messages"][1]["content"] = text
    return request


def _system(text):
    request = copy.deepcopy(BASE)
    request["messages"][0]["content"] = text
    return request


# Each builder gets a value and returns (request, tenant): two different values must give two partitions.
VARIANTS = {
    "tenant": (st.text(max_size=8), lambda v: (BASE, v)),
    "model": (st.sampled_from(["gpt-4o-mini", "gpt-4o", "o3", "claude"]), lambda v: (_with(model=v), "")),
    "system": (st.text(min_size=1, max_size=20), lambda v: (_system(v), "")),
    "earlier_turn": (st.text(min_size=1, max_size=20), lambda v: (_earlier_turn(v), "")),
    "tools": (st.integers(0, 3), lambda v: (_with(tools=[TOOL] * v), "")),
    "tool_choice": (st.sampled_from(["auto", "none", "required"]), lambda v: (_with(tools=[TOOL], tool_choice=v), "")),
    "response_format": (st.sampled_from(["text", "json_object"]), lambda v: (_with(response_format={"type": v}), "")),
    "temperature": (st.sampled_from([0, 0.2, 0.5, 0.7]), lambda v: (_with(temperature=v), "")),
    "top_p": (st.sampled_from([0.1, 0.5, 0.9, 1.0]), lambda v: (_with(top_p=v), "")),
    "seed": (st.integers(0, 1000), lambda v: (_with(seed=v), "")),
    "stop": (st.sampled_from(["\n", "END", "###"]), lambda v: (_with(stop=[v]), "")),
    "n": (st.integers(1, 4), lambda v: (_with(n=v), "")),
    # Buckets are powers of two: values from different buckets must differ.
    "max_tokens": (st.sampled_from([16, 100, 1000, 5000]), lambda v: (_with(max_tokens=v), "")),
}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(VARIANTS)))
def test_requests_differing_in_a_partition_field_never_share_a_partition(data, field):
    strategy, build = VARIANTS[field]
    a, b = data.draw(st.tuples(strategy, strategy).filter(lambda ab: ab[0] != ab[1]))
    key_a = normalize(build(a)[0], tenant=build(a)[1])
    key_b = normalize(build(b)[0], tenant=build(b)[1])
    assert key_a.partition != key_b.partition
    assert key_a.exact_key != key_b.exact_key
    assert key_a.query_text == key_b.query_text == "When was he born?"


@settings(max_examples=40, deadline=None)
@given(pad=st.lists(st.sampled_from([" ", "  ", "\t", "\n"]), min_size=3, max_size=3))
def test_whitespace_in_the_query_does_not_change_the_exact_key(pad):
    plain = normalize(BASE)
    padded = copy.deepcopy(BASE)
    padded["messages"][-1]["content"] = f"{pad[0]}When was{pad[1]}he born?{pad[2]}"
    spaced = normalize(padded)
    assert spaced.partition == plain.partition
    assert spaced.exact_key == plain.exact_key


def test_different_query_text_same_partition_different_exact_key():
    other = copy.deepcopy(BASE)
    other["messages"][-1]["content"] = "Where was he born?"
    a, b = normalize(BASE), normalize(other)
    assert a.partition == b.partition
    assert a.exact_key != b.exact_key
    assert b.query_text == "Where was he born?"


def test_max_tokens_in_one_bucket_share_a_partition():
    assert normalize(_with(max_tokens=100)).partition == normalize(_with(max_tokens=120)).partition
    assert normalize(_with(max_tokens=100)).partition != normalize(_with(max_tokens=200)).partition


def test_content_part_list_keys_like_a_string():
    parts = copy.deepcopy(BASE)
    parts["messages"][-1]["content"] = [{"type": "text", "text": "When was he born?"}]
    as_string, as_parts = normalize(BASE), normalize(parts)
    assert as_parts.query_text == "When was he born?"
    assert as_parts.exact_key == as_string.exact_key


def test_image_part_goes_to_the_partition():
    def with_image(url):
        request = copy.deepcopy(BASE)
        request["messages"][-1]["content"] = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return request

    a, b = normalize(with_image("https://x/cat.png")), normalize(with_image("https://x/dog.png"))
    assert a.query_text == b.query_text == "What is this?"
    assert a.partition != b.partition


def test_plain_prompt_string():
    key = normalize("Translate 'cat' to French")
    assert key.query_text == "Translate 'cat' to French"
    assert key.model == ""
    # A completions prompt never shares an entry with a chat message of the same text.
    chat = normalize({"messages": [{"role": "user", "content": "Translate 'cat' to French"}]})
    assert chat.partition != key.partition
    assert normalize({"prompt": ["Translate 'cat' to French"]}, kind="completions").exact_key == key.exact_key


def test_responses_api_input_string_and_messages():
    as_string = normalize({"model": "gpt-4o", "input": "Tell me a joke"}, kind="responses")
    as_messages = normalize({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Tell me a joke"}]}]},
                            kind="responses")
    assert as_string.query_text == as_messages.query_text == "Tell me a joke"
    assert as_string.model == "gpt-4o"
    chat = normalize({"model": "gpt-4o", "messages": [{"role": "user", "content": "Tell me a joke"}]})
    assert chat.partition != as_string.partition


@pytest.mark.parametrize("field, value", [
    ("stream", True), ("user", "alice"), ("metadata", {"run": "7"}), ("stream_options", {"include_usage": True}),
])
def test_ignored_fields_do_not_change_keys(field, value):
    assert normalize(_with(**{field: value})) == normalize(BASE)


def test_unknown_fields_change_the_partition():
    assert normalize(_with(frobnicate=1)).partition != normalize(BASE).partition
    assert normalize(_with(frobnicate=1)).partition != normalize(_with(frobnicate=2)).partition


@pytest.mark.parametrize("request_body, field", [
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "system", "content": "hi"}]}, "messages"),
    ({"model": "m", "messages": ["hello"]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": [3]}]}, "messages[0].content[0]"),
    ({"model": 4, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "m", "prompt": ["one", "two"]}, "prompt"),
    ({"model": "m", "prompt": "hi", "temperature": "hot"}, "temperature"),
    ({"model": "m", "prompt": "hi", "n": "2"}, "n"),
])
def test_malformed_requests_raise_request_error_naming_the_field(request_body, field):
    with pytest.raises(RequestError) as caught:
        normalize(request_body)
    assert caught.value.field == field
    assert field.split("[")[0] in str(caught.value)


def test_non_mapping_request_and_unknown_kind_are_rejected():
    with pytest.raises(RequestError):
        normalize(["not", "a", "request"])
    with pytest.raises(RequestError) as caught:
        normalize(BASE, kind="images")
    assert caught.value.field == "kind"


def test_embeddings_are_exact_only_and_keyed_by_their_whole_input():
    one = normalize({"model": "text-embedding-3-small", "input": ["a", "b"]}, kind="embeddings")
    assert one.semantic is False
    assert one == normalize({"model": "text-embedding-3-small", "input": ["a", "b"], "user": "u"}, kind="embeddings")
    assert one.exact_key != normalize({"model": "text-embedding-3-small", "input": ["b", "a"]}, kind="embeddings").exact_key
    assert one.partition != normalize({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 64}, kind="embeddings").partition
    with pytest.raises(RequestError) as caught:
        normalize({"model": "text-embedding-3-small"}, kind="embeddings")
    assert caught.value.field == "input"


def test_high_temperature_is_exact_only_unless_seeded():
    hot = normalize(_with(temperature=1.5))
    assert hot.semantic is False and "temperature" in hot.bypass_reason
    assert normalize(_with(temperature=1.5, seed=7)).semantic is True
    assert normalize(_with(temperature=0.7)).semantic is True
    assert normalize(_with(temperature=0.7), semantic_max_temperature=0.5).semantic is False
    assert normalize(_with(n=3)).semantic is False


def test_tenant_from_api_key_never_contains_the_key():
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    tenant = tenant_from_api_key(key)
    assert key not in tenant and key[3:20] not in tenant
    assert tenant == tenant_from_api_key(key)
    assert tenant != tenant_from_api_key(key + "x")
    request_key = normalize(BASE, tenant=tenant)
    assert key not in repr(request_key)


# -- values no request can carry: a typed error naming the field, never another exception --------

@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens", "max_output_tokens"])
@pytest.mark.parametrize("value", ["10", [10], {"n": 10}, True, False, 0, -3, 1.5, float("nan"), float("inf")])
def test_a_token_cap_must_be_a_positive_integer(name, value):
    with pytest.raises(RequestError) as caught:
        normalize(_with(**{name: value}))
    assert caught.value.field == name and name in str(caught.value)
    assert normalize(_with(**{name: 7})).partition == normalize(_with(**{name: 8})).partition  # still bucketed
    normalize(_with(**{name: None}))  # null is no cap: accepted


@pytest.mark.parametrize("changes, field", [
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": float("inf")}, "top_p"),
    ({"tools": [{"type": "function", "function": {"name": "f", "x": [1.0, -float("inf")]}}]}, "tools[0].function.x[1]"),
    ({"vendor": {"deep": {"er": float("nan")}}}, "vendor.deep.er"),
])
def test_a_number_json_cannot_carry_names_its_field(changes, field):
    with pytest.raises(RequestError) as caught:
        normalize(_with(**changes))
    assert caught.value.field == field


def test_a_lone_surrogate_names_its_field():
    query = copy.deepcopy(BASE)
    query["messages"][-1]["content"] = "When was he \ud800 born?"
    system = copy.deepcopy(BASE)
    system["messages"][0]["content"] = "\udfff"
    for request, field in ((query, "messages[3].content"), (system, "messages[0].content"), (_with(seed="\ud83d"), "seed"),
                           ("a prompt \ud800", "prompt")):
        with pytest.raises(RequestError) as caught:
            normalize(request)
        assert caught.value.field == field
    assert normalize(_with(user="\ud800")) == normalize(BASE)  # ignored fields are not keyed
    paired = copy.deepcopy(BASE)
    paired["messages"][-1]["content"] = "a parrot \U0001f99c"  # a surrogate *pair* in JSON is one character
    assert normalize(paired).query_text.endswith("\U0001f99c")


@pytest.mark.parametrize("text", [5, None, ["x"], {"t": "x"}])
def test_a_text_part_whose_text_is_not_a_string_names_it(text):
    request = copy.deepcopy(BASE)
    request["messages"][-1]["content"] = [{"type": "text", "text": "ok"}, {"type": "text", "text": text}]
    with pytest.raises(RequestError) as caught:
        normalize(request)
    assert caught.value.field == "messages[3].content[1].text"
    responses = {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]}
    with pytest.raises(RequestError) as caught:
        normalize(responses, kind="responses")
    assert caught.value.field == "input[0].content[0].text"


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | st.sampled_from(["\ud800", "x\udfff"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
FIELDS = st.sampled_from(["model", "messages", "prompt", "input", "temperature", "n", "max_tokens", "seed", "tools", "x"])


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(FIELDS, JSON_LIKE, max_size=3), kind=st.sampled_from(["chat", "completions", "responses", "embeddings"]))
def test_any_request_is_keyed_or_refused_with_a_request_error(changes, kind):
    try:
        key = normalize(_with(**changes), kind=kind)
    except RequestError as exc:
        assert exc.field  # names what it refused
        return
    json.dumps([key.partition, key.exact_key, key.query_text]).encode()  # a key is always encodable
