"""@semcache.cached: misses call the function, repeats and paraphrases do not, types round-trip."""

from __future__ import annotations

import asyncio

import pytest
from openai.types.chat import ChatCompletion

import semcache
from semcache import CacheInfo, MatchPolicy
from semcache.upstream import FunctionUpstream


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def cache(make_cache):
    return make_cache(policy=MatchPolicy.cosine(0.9))


class Counter:
    """Count calls of a fake LLM function and answer with the question itself."""

    def __init__(self) -> None:
        self.calls = 0

    def answer(self, messages) -> str:
        self.calls += 1
        return f"answer {self.calls} to {messages[-1]['content']}"


def test_sync_miss_calls_repeat_and_paraphrase_do_not(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages, model="gpt-4o-mini", temperature=0):
        return llm.answer(messages)

    first = ask(user("What is the capital of France?"))
    assert llm.calls == 1
    assert ask(user("What is the capital of France?")) == first  # exact repeat
    assert ask(user("the capital of France is what?")) == first  # same words reordered: a paraphrase here
    assert llm.calls == 1
    assert ask(user("How do I sort a list in Python?")) != first
    assert llm.calls == 2
    assert ask.cache_info() == CacheInfo(hits=2, misses=2, bypasses=0, stale=0, entries=2)


def test_async_function_is_cached(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    async def ask(messages, model="gpt-4o-mini"):
        await asyncio.sleep(0)
        return llm.answer(messages)

    async def run():
        first = await ask(user("What is the capital of France?"))
        again = await ask(user("the capital of France is what?"))
        return first, again

    first, again = asyncio.run(run())
    assert first == again
    assert llm.calls == 1
    info = ask.cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 1, 1)


def test_cache_clear_empties_the_cache_and_resets_counters(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages):
        return llm.answer(messages)

    ask(user("What is the capital of France?"))
    ask(user("What is the capital of France?"))
    ask.cache_clear()
    assert ask.cache_info() == CacheInfo(0, 0, 0, 0, 0)
    ask(user("What is the capital of France?"))
    assert llm.calls == 2  # cleared: the repeat after clear is a miss


def test_bypass_calls_the_function_and_does_not_store(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages):
        return llm.answer(messages)

    ask(user("What is the capital of France?"), semcache_bypass=True)
    assert ask.cache_info() == CacheInfo(hits=0, misses=0, bypasses=1, stale=0, entries=0)
    ask(user("What is the capital of France?"))
    ask(user("What is the capital of France?"), semcache_bypass=True)
    assert llm.calls == 3  # a bypass runs the function even when a cached answer exists
    assert ask.cache_info().bypasses == 2


def test_bypass_on_async_function_does_not_store(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    async def ask(messages):
        return llm.answer(messages)

    asyncio.run(ask(user("What is the capital of France?"), semcache_bypass=True))
    assert ask.cache_info().entries == 0
    assert ask.cache_info().bypasses == 1


def completion_body(text: str, completion_id: str = "chatcmpl-1") -> dict:
    return {
        "id": completion_id, "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


@pytest.mark.parametrize("make_answer", [
    lambda: "Paris.",
    lambda: {"answer": "Paris", "sources": ["atlas"], "confidence": 0.9},
    lambda: ChatCompletion.model_validate(completion_body("Paris.")),
], ids=["str", "dict", "ChatCompletion"])
def test_return_values_round_trip_with_their_type(cache, make_answer):
    @semcache.cached(cache=cache)
    def ask(messages):
        return make_answer()

    original = ask(user("What is the capital of France?"))
    cached = ask(user("What is the capital of France?"))
    assert ask.cache_info().hits == 1
    assert type(cached) is type(original)
    assert cached == original
    if isinstance(cached, ChatCompletion):
        assert cached.choices[0].message.content == "Paris."
        assert cached.usage.prompt_tokens == 12


def test_chat_completion_usage_is_counted_as_saved(cache):
    @semcache.cached(cache=cache)
    def ask(messages, model="gpt-4o-mini"):
        return ChatCompletion.model_validate(completion_body("Paris."))

    ask(user("What is the capital of France?"))
    ask(user("What is the capital of France?"))
    total = cache.stats()["total"]
    assert total["prompt_tokens_saved"] == 12
    assert total["completion_tokens_saved"] == 5


@pytest.mark.parametrize("first, second", [
    ({"model": "gpt-4o-mini"}, {"model": "gpt-4o"}),
    ({"temperature": 0}, {"temperature": 0.7}),
])
def test_different_model_or_temperature_does_not_share_answers(cache, first, second):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages, model="gpt-4o-mini", temperature=0):
        return llm.answer(messages)

    ask(user("What is the capital of France?"), **first)
    ask(user("What is the capital of France?"), **second)
    assert llm.calls == 2
    ask(user("What is the capital of France?"), **second)
    assert llm.calls == 2


def test_non_json_argument_is_not_part_of_the_key(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages, client=None):
        return llm.answer(messages)

    ask(user("What is the capital of France?"), client=object())
    ask(user("What is the capital of France?"), client=object())  # another object, same request
    assert llm.calls == 1


def test_var_keyword_arguments_join_the_key(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(**kwargs):
        return llm.answer(kwargs["messages"])

    ask(messages=user("What is the capital of France?"), model="a")
    ask(messages=user("What is the capital of France?"), model="b")
    ask(messages=user("What is the capital of France?"), model="a")
    assert llm.calls == 2


def test_prompt_argument_is_a_completions_request(cache):
    calls = []

    @semcache.cached(cache=cache)
    def complete(prompt, model="gpt-3.5-turbo-instruct"):
        calls.append(prompt)
        return f"completion of {prompt}"

    assert complete("Once upon a time") == complete("Once upon a time")
    assert calls == ["Once upon a time"]


def test_custom_key_function_builds_the_request(cache):
    llm = Counter()

    @semcache.cached(cache=cache, key=lambda question, session: question)
    def ask(question, session):
        return llm.answer(user(question))

    first = ask("What is the capital of France?", "session-1")
    assert ask("What is the capital of France?", "session-2") == first  # session is not in the key
    assert llm.calls == 1
    ask("How do I sort a list in Python?", "session-1")
    assert llm.calls == 2


def test_bare_decorator_without_parentheses_is_a_type_error():
    with pytest.raises(TypeError, match=r"@semcache.cached\(\) with parentheses"):
        @semcache.cached
        def ask(messages):
            return "x"


def test_function_without_messages_or_prompt_is_rejected_at_decoration(cache):
    with pytest.raises(TypeError, match="needs a 'messages' or 'prompt' parameter"):
        @semcache.cached(cache=cache)
        def ask(question, model="gpt-4o-mini"):
            return "x"


def test_cache_and_cache_options_together_are_rejected(cache, tmp_path):
    with pytest.raises(TypeError, match="either cache="):
        semcache.cached(cache=cache, directory=str(tmp_path / "other"))


def test_call_with_var_keyword_but_no_messages_is_a_type_error(cache):
    @semcache.cached(cache=cache)
    def ask(**kwargs):
        return "x"

    with pytest.raises(TypeError, match="without 'messages' or 'prompt'"):
        ask(model="gpt-4o-mini")


def test_client_sends_the_arguments_upstream_without_running_the_body(cache):
    seen = []

    def handler(request, kind):
        seen.append((request["messages"][-1]["content"], request["model"], kind))
        return completion_body(f"answer to {request['messages'][-1]['content']}", f"chatcmpl-{len(seen)}")

    upstream = FunctionUpstream(handler)

    @semcache.cached(cache=cache, client=upstream)
    def ask(messages, model="gpt-4o-mini", temperature=0):
        raise AssertionError("the body must not run when client= is given")

    first = ask(user("What is the capital of France?"))
    assert first["choices"][0]["message"]["content"] == "answer to What is the capital of France?"
    assert ask(user("the capital of France is what?")) == first
    ask(user("How do I sort a list in Python?"))
    assert upstream.calls == 2
    assert seen == [("What is the capital of France?", "gpt-4o-mini", "chat"),
                    ("How do I sort a list in Python?", "gpt-4o-mini", "chat")]


def test_client_with_async_function(cache):
    upstream = FunctionUpstream(lambda request, kind: completion_body("Paris."))

    @semcache.cached(cache=cache, client=upstream)
    async def ask(messages, model="gpt-4o-mini"):
        raise AssertionError("the body must not run when client= is given")

    async def run():
        return [await ask(user("What is the capital of France?")) for _ in range(3)]

    answers = asyncio.run(run())
    assert answers[0] == answers[2]
    assert upstream.calls == 1


def test_bare_string_result_usage_is_estimated_with_tiktoken(cache):
    @semcache.cached(cache=cache)
    def ask(messages, model="gpt-4o-mini"):
        return "The capital of France is Paris, a city on the Seine."

    ask(user("What is the capital of France?"))
    ask(user("What is the capital of France?"))
    total = cache.stats()["total"]
    assert total["prompt_tokens_saved"] > 0
    assert total["completion_tokens_saved"] > 0


def test_cache_is_opened_lazily_in_directory(tmp_path, embedder):
    directory = tmp_path / "lazy"

    @semcache.cached(directory=str(directory), embedder=embedder, policy=MatchPolicy.cosine(0.9))
    def ask(messages):
        return "Paris."

    assert ask.cache_info().entries == 0
    assert not directory.exists()  # nothing opened before the first call
    try:
        ask(user("What is the capital of France?"))
        assert directory.exists()
        assert ask.cache_info().entries == 1
    finally:
        ask.cache().close()


def test_wrapper_keeps_the_function_name_and_doc(cache):
    @semcache.cached(cache=cache)
    def ask(messages):
        """Ask the model."""
        return "x"

    assert ask.__name__ == "ask"
    assert ask.__doc__ == "Ask the model."


def test_threshold_option_overrides_the_policy(cache):
    llm = Counter()

    @semcache.cached(cache=cache, threshold=-1.0)
    def ask(messages):
        return llm.answer(messages)

    first = ask(user("What is the capital of France?"))
    assert ask(user("How do I sort a list in Python?")) == first  # any candidate clears a threshold of -1
    assert llm.calls == 1


def test_tenants_do_not_share_answers(cache):
    llm = Counter()

    @semcache.cached(cache=cache, tenant="team-a")
    def ask_a(messages):
        return llm.answer(messages)

    @semcache.cached(cache=cache, tenant="team-b")
    def ask_b(messages):
        return llm.answer(messages)

    ask_a(user("What is the capital of France?"))
    ask_b(user("What is the capital of France?"))
    assert llm.calls == 2
    ask_a(user("What is the capital of France?"))
    assert llm.calls == 2


def test_methods_are_keyed_without_self(cache):
    class Assistant:
        def __init__(self, name):
            self.name, self.calls = name, 0

        @semcache.cached(cache=cache)
        def ask(self, messages, model="gpt-4o-mini"):
            self.calls += 1
            return f"{self.name}: {messages[-1]['content']}"

    one, two = Assistant("one"), Assistant("two")
    assert one.ask(user("What is the capital of France?")) == "one: What is the capital of France?"
    assert two.ask(user("What is the capital of France?")) == "one: What is the capital of France?"
    assert (one.calls, two.calls) == (1, 0)
