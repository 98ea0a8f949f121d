"""@semcache.cached: misses call the function, repeats and paraphrases do not, types round-trip."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import threading
from typing import NamedTuple

import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessage

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


def test_non_json_argument_is_refused_at_call_time_naming_it(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages, client=None):
        return llm.answer(messages)

    with pytest.raises(TypeError, match=r"argument 'client'.*object.*ignore=\('client',\)"):
        ask(user("What is the capital of France?"), client=object())
    assert llm.calls == 0
    ask(user("What is the capital of France?"))  # the default None is JSON: keyed as usual
    assert llm.calls == 1


def test_non_json_value_inside_a_list_is_refused_with_its_path(cache):
    @semcache.cached(cache=cache)
    def ask(messages, tools=()):
        return "x"

    with pytest.raises(TypeError, match=r"argument 'tools': tools\[1\] is a builtins.function"):
        ask(user("What is the capital of France?"), tools=[{"type": "function"}, lambda: None])


def test_ignore_leaves_a_named_argument_out_of_the_key(cache):
    llm = Counter()

    @semcache.cached(cache=cache, ignore=("client",))
    def ask(messages, client=None):
        return llm.answer(messages)

    ask(user("What is the capital of France?"), client=object())
    ask(user("What is the capital of France?"), client=object())  # another client, same request
    assert llm.calls == 1


def test_ignore_accepts_one_name_as_a_string(cache):
    llm = Counter()

    @semcache.cached(cache=cache, ignore="logger")
    def ask(messages, logger):
        return llm.answer(messages)

    ask(user("What is the capital of France?"), object())
    ask(user("What is the capital of France?"), object())
    assert llm.calls == 1


@pytest.mark.parametrize("options, match", [
    ({"ignore": ("clinet",)}, "ignore= names 'clinet', which is not a parameter of"),
    ({"ignore": ("messages",)}, "cannot ignore 'messages'"),
    ({"ignore": ("client",), "key": lambda messages, client: messages}, "key= or ignore="),
])
def test_bad_ignore_is_refused_at_decoration(cache, options, match):
    with pytest.raises(TypeError, match=match):
        @semcache.cached(cache=cache, **options)
        def ask(messages, client=None):
            return "x"


def test_key_function_returning_a_non_json_value_is_refused(cache):
    @semcache.cached(cache=cache, key=lambda messages, client: {"messages": messages, "client": client})
    def ask(messages, client):
        return "x"

    with pytest.raises(TypeError, match=r"key\(\) returned.*client is a builtins.object"):
        ask(user("What is the capital of France?"), object())


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


# -- namespaces: each decorated function has its own entries -----------------------------------


def test_two_functions_with_the_same_arguments_do_not_share_answers(tmp_path, embedder):
    directory = str(tmp_path / "shared")

    @semcache.cached(directory=directory, embedder=embedder)
    def summarize(prompt):
        return f"summary of {prompt}"

    @semcache.cached(directory=directory, embedder=embedder)
    def translate(prompt):
        return f"translation of {prompt}"

    try:
        text = "The quick brown fox jumps over the lazy dog."
        assert summarize(prompt=text) == f"summary of {text}"
        assert translate(prompt=text) == f"translation of {text}"
        assert translate(prompt=text) == f"translation of {text}"
        assert (summarize.cache_info().misses, translate.cache_info().misses, translate.cache_info().hits) == (1, 1, 1)
    finally:
        summarize.cache().close()
        translate.cache().close()


def test_namespace_joins_the_partition_never_the_query_text(cache):
    @semcache.cached(cache=cache, threshold=-1.0)  # any candidate in the partition would answer
    def summarize(prompt):
        return "summary"

    @semcache.cached(cache=cache, threshold=-1.0)
    def translate(prompt):
        return "translation"

    summarize("The quick brown fox jumps over the lazy dog.")
    assert translate("A completely different sentence about a fox.") == "translation"  # no semantic match across
    entries = sorted(cache.entries(), key=lambda e: e.id)
    assert [e.query_text for e in entries] == ["The quick brown fox jumps over the lazy dog.",
                                               "A completely different sentence about a fox."]
    assert entries[0].partition != entries[1].partition
    assert entries[0].tenant == f"|{__name__}.{test_namespace_joins_the_partition_never_the_query_text.__name__}" \
                                ".<locals>.summarize"  # default tenant "", then the function's module and qualname


def test_explicit_namespace_shares_entries_across_functions_on_purpose(cache):
    @semcache.cached(cache=cache, namespace="qa")
    def ask(messages):
        return "Paris."

    @semcache.cached(cache=cache, namespace="qa")
    def ask_renamed(messages):
        raise AssertionError("same namespace: the answer of ask is shared")

    ask(user("What is the capital of France?"))
    assert ask_renamed(user("What is the capital of France?")) == "Paris."


def test_key_function_requests_are_namespaced_by_the_decorated_function(cache):
    by_question = lambda question: question  # noqa: E731

    @semcache.cached(cache=cache, key=by_question)
    def define(question):
        return f"definition: {question}"

    @semcache.cached(cache=cache, key=by_question)
    def example(question):
        return f"example: {question}"

    assert define("recursion") == "definition: recursion"
    assert example("recursion") == "example: recursion"


def test_tenant_and_namespace_both_separate_entries(cache):
    @semcache.cached(cache=cache, tenant="team-a", namespace="qa")
    def ask_a(messages):
        return "a"

    @semcache.cached(cache=cache, tenant="team-b", namespace="qa")
    def ask_b(messages):
        return "b"

    ask_a(user("What is the capital of France?"))
    assert ask_b(user("What is the capital of France?")) == "b"
    assert sorted(e.tenant for e in cache.entries()) == ["team-a|qa", "team-b|qa"]


@pytest.mark.parametrize("namespace, error, match", [
    ("", ValueError, "namespace must be a non-empty string"),
    ("a|b", ValueError, "cannot contain '\\|'"),
    (3, TypeError, "namespace must be a non-empty string"),
])
def test_bad_namespace_is_refused(cache, namespace, error, match):
    with pytest.raises(error, match=match):
        semcache.cached(cache=cache, namespace=namespace)


def test_lambda_needs_an_explicit_namespace(cache):
    with pytest.raises(TypeError, match="every lambda.*namespace="):
        semcache.cached(cache=cache)(lambda prompt: "x")
    ask = semcache.cached(cache=cache, namespace="one-lambda")(lambda prompt: "x")
    assert ask("Once upon a time") == "x"


class AsyncLLM:
    """A callable object with an async ``__call__``: no ``__qualname__`` of its own."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, messages):
        self.calls += 1
        await asyncio.sleep(0)
        return f"answer to {messages[-1]['content']}"


def test_callable_object_needs_a_namespace_and_an_async_call_is_awaited(cache):
    with pytest.raises(TypeError, match="namespace="):
        semcache.cached(cache=cache)(AsyncLLM())
    llm = AsyncLLM()
    ask = semcache.cached(cache=cache, namespace="llm")(llm)

    async def run():
        return [await ask(user("What is the capital of France?")) for _ in range(2)]

    assert asyncio.run(run()) == ["answer to What is the capital of France?"] * 2
    assert llm.calls == 1
    assert ask.cache_info().hits == 1


# -- cache_clear and cache_info see only this function's entries --------------------------------


def test_cache_clear_deletes_only_this_functions_entries(cache):
    @semcache.cached(cache=cache)
    def summarize(prompt):
        return "summary"

    @semcache.cached(cache=cache)
    def translate(prompt):
        return "translation"

    summarize("The quick brown fox.")
    summarize("A lazy dog.")
    translate("The quick brown fox.")
    sidecar = cache.insert({"model": "gpt-4o-mini", "messages": user("What is 2+2?")}, "4")  # the sidecar's, say
    assert (summarize.cache_info().entries, translate.cache_info().entries) == (2, 1)

    summarize.cache_clear()
    assert summarize.cache_info() == CacheInfo(0, 0, 0, 0, 0)
    assert translate.cache_info() == CacheInfo(hits=0, misses=1, bypasses=0, stale=0, entries=1)
    assert sorted((e.tenant.rpartition(".")[2], e.query_text) for e in cache.entries()) == [
        ("", "What is 2+2?"), ("translate", "The quick brown fox.")]
    assert cache.lookup({"model": "gpt-4o-mini", "messages": user("What is 2+2?")}).entry.id == sidecar.id
    assert translate("The quick brown fox.") == "translation"
    assert translate.cache_info().hits == 1  # still cached


def test_cache_clear_reaches_entries_written_by_an_earlier_process(tmp_path, embedder):
    directory = str(tmp_path / "persisted")

    def decorate():
        @semcache.cached(directory=directory, embedder=embedder, namespace="qa")
        def ask(messages):
            return "Paris."
        return ask

    first = decorate()
    first(user("What is the capital of France?"))
    first.cache().close()
    second = decorate()  # a new process: nothing in memory knows the first one's entries
    try:
        second.cache_clear()
        assert second.cache_info().entries == 0
        assert len(second.cache()) == 0
    finally:
        second.cache().close()


# -- what joins the key --------------------------------------------------------------------------


@dataclasses.dataclass
class Persona:
    name: str
    tone: str = "plain"


@dataclasses.dataclass
class OtherPersona:
    name: str
    tone: str = "plain"


class Style(pydantic.BaseModel):
    language: str
    formal: bool = False


class OtherStyle(pydantic.BaseModel):
    language: str
    formal: bool = False


class Level(enum.IntEnum):
    LOW = 1


class Point(NamedTuple):
    x: int
    y: int


def test_dataclass_and_pydantic_arguments_join_the_key_by_value(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages, persona, style):
        return llm.answer(messages) + f" as {persona.name} in {style.language}"

    question = user("What is the capital of France?")
    assert ask(question, Persona("pirate"), Style(language="fr")).endswith("as pirate in fr")
    assert ask(question, Persona("pirate"), Style(language="fr")).endswith("as pirate in fr")  # equal values: a hit
    assert llm.calls == 1
    assert ask(question, Persona("poet"), Style(language="fr")).endswith("as poet in fr")
    assert ask(question, Persona("pirate"), Style(language="de")).endswith("as pirate in de")
    assert llm.calls == 3


@pytest.mark.parametrize("first, second", [
    ((1, 2), [1, 2]),
    (Point(1, 2), (1, 2)),
    (Level.LOW, 1),
    (Persona("pirate"), OtherPersona("pirate")),
    (Style(language="fr"), OtherStyle(language="fr")),
], ids=["tuple-list", "namedtuple-tuple", "intenum-int", "dataclass-types", "pydantic-types"])
def test_values_with_equal_json_but_other_types_do_not_share(cache, first, second):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages, option):
        llm.answer(messages)
        return type(option).__name__

    question = user("What is the capital of France?")
    assert ask(question, first) == type(first).__name__
    assert ask(question, second) == type(second).__name__  # the function may treat the types apart
    assert llm.calls == 2


def test_tuples_and_lists_share_when_the_request_goes_to_a_client(cache):
    upstream = FunctionUpstream(lambda request, kind: completion_body(f"stop={request['stop']}"))

    @semcache.cached(cache=cache, client=upstream)
    def ask(messages, model="gpt-4o-mini", stop=None):
        ...

    first = ask(user("What is the capital of France?"), stop=("\n", "."))
    assert ask(user("What is the capital of France?"), stop=["\n", "."]) == first  # upstream sees the same JSON
    assert upstream.calls == 1
    assert first["choices"][0]["message"]["content"] == "stop=['\\n', '.']"


@dataclasses.dataclass
class WithHiddenState:
    name: str

    def __post_init__(self):
        self.system_prompt = f"You are {self.name}."  # not a field: it would not be keyed


class WithPrivate(pydantic.BaseModel):
    language: str
    _secret_prompt: str = pydantic.PrivateAttr(default="be terse")


class WithExcluded(pydantic.BaseModel):
    language: str
    prompt: str = pydantic.Field(default="be terse", exclude=True)


@pytest.mark.parametrize("value, match", [
    (WithHiddenState("pirate"), "attribute 'system_prompt' outside its fields"),
    (WithPrivate(language="fr"), "private attributes"),
    (WithExcluded(language="fr"), "field 'prompt' excluded from its dump"),
], ids=["dataclass-extra-attribute", "pydantic-private", "pydantic-excluded"])
def test_models_with_state_outside_their_json_are_refused(cache, value, match):
    @semcache.cached(cache=cache)
    def ask(messages, option):
        return "x"

    with pytest.raises(TypeError, match=f"argument 'option'.*{match}"):
        ask(user("What is the capital of France?"), value)


def test_openai_message_objects_in_messages_are_keyed_as_their_json(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(messages):
        return llm.answer(messages)

    history = [{"role": "user", "content": "Name a European capital."},
               ChatCompletionMessage(role="assistant", content="Paris.")]
    first = ask([*history, {"role": "user", "content": "Which country is it in?"}])
    assert ask([*history, {"role": "user", "content": "Which country is it in?"}]) == first
    other = [history[0], ChatCompletionMessage(role="assistant", content="Rome.")]
    ask([*other, {"role": "user", "content": "Which country is it in?"}])  # another answer before: another partition
    assert llm.calls == 2


@pytest.mark.parametrize("name", ["user", "stream", "metadata", "timeout"])
def test_arguments_named_like_fields_the_engine_ignores_still_join_the_key(cache, name):
    calls = []

    @semcache.cached(cache=cache)
    def ask(messages, **options):
        calls.append(options)
        return f"answer for {options}"

    assert ask(user("Write a greeting."), **{name: "alice"}) == f"answer for { {name: 'alice'} }"
    assert ask(user("Write a greeting."), **{name: "bob"}) == f"answer for { {name: 'bob'} }"
    assert len(calls) == 2


def test_ignored_api_fields_are_sent_to_a_client_unchanged(cache):
    seen = []

    def handler(request, kind):
        seen.append(request)
        return completion_body("Hello.")

    @semcache.cached(cache=cache, client=FunctionUpstream(handler))
    def ask(messages, model="gpt-4o-mini", user=None):
        ...

    ask(user("Write a greeting."), user="alice")
    ask(user("Write a greeting."), user="bob")  # the API's user field never changes an answer
    assert seen == [{"messages": user("Write a greeting."), "model": "gpt-4o-mini", "user": "alice"}]


def test_var_positional_arguments_join_the_key(cache):
    llm = Counter()

    @semcache.cached(cache=cache)
    def ask(prompt, *styles):
        llm.calls += 1
        return f"{prompt} in {styles}"

    assert ask("Describe Paris", "short") == "Describe Paris in ('short',)"
    assert ask("Describe Paris", "long") == "Describe Paris in ('long',)"
    assert llm.calls == 2


def test_a_plain_function_parameter_named_cls_joins_the_key(cache):
    @semcache.cached(cache=cache)
    def classify(cls, prompt):
        return f"is it {cls}?"

    assert classify("spam", "Buy now!") == "is it spam?"
    assert classify("ham", "Buy now!") == "is it ham?"


def test_subclass_instances_do_not_share_with_the_base_class(cache):
    class Assistant:
        system = "You are terse."

        @semcache.cached(cache=cache)
        def ask(self, messages):
            return f"{self.system} {messages[-1]['content']}"

    class Pirate(Assistant):
        system = "You are a pirate."

    question = user("What is the capital of France?")
    assert Assistant().ask(question) == "You are terse. What is the capital of France?"
    assert Pirate().ask(question) == "You are a pirate. What is the capital of France?"
    assert Pirate().ask(question) == "You are a pirate. What is the capital of France?"
    assert Assistant.ask.cache_info() == CacheInfo(hits=1, misses=2, bypasses=0, stale=0, entries=2)


def test_reserved_field_in_arguments_is_refused(cache):
    @semcache.cached(cache=cache)
    def ask(**kwargs):
        return "x"

    with pytest.raises(TypeError, match="semcache:decorator"):
        ask(messages=user("What is the capital of France?"), **{"semcache:decorator": {}})


# -- bypass, async, client ------------------------------------------------------------------------


def test_function_with_its_own_semcache_bypass_parameter_is_refused(cache):
    with pytest.raises(TypeError, match="semcache_bypass"):
        @semcache.cached(cache=cache)
        def ask(messages, semcache_bypass=False):
            return "x"


def test_sync_function_returning_a_coroutine_is_refused_at_call(cache):
    async def answer():
        return "Paris."

    @semcache.cached(cache=cache)
    def ask(messages):
        return answer()

    with pytest.raises(TypeError, match="returned a coroutine"):
        ask(user("What is the capital of France?"))
    assert len(cache) == 0


class ThreadNotingEmbedder:
    """Wrap an embedder and note the threads that read its ``model_id`` (the cache does, opening)."""

    def __init__(self, inner) -> None:
        self.inner, self.threads = inner, []
        self.dim, self.embed = inner.dim, inner.embed

    @property
    def model_id(self) -> str:
        self.threads.append(threading.get_ident())
        return self.inner.model_id


def test_async_first_call_opens_the_cache_off_the_event_loop(tmp_path, embedder):
    noting = ThreadNotingEmbedder(embedder)

    @semcache.cached(directory=str(tmp_path / "lazy-async"), embedder=noting)
    async def ask(messages):
        return "Paris."

    async def run():
        loop_thread = threading.get_ident()
        await ask(user("What is the capital of France?"))
        return loop_thread

    loop_thread = asyncio.run(run())
    try:
        assert noting.threads[0] != loop_thread  # opening (loading a model) never blocks the event loop
    finally:
        ask.cache().close()


class RecordingUpstream:
    """An upstream that records the tenant each call was made for."""

    def __init__(self) -> None:
        self.tenants: list[str] = []

    def call(self, request, *, kind="chat", tenant=""):
        self.tenants.append(tenant)
        return FunctionUpstream(lambda r, k: completion_body("Paris.")).call(request, kind=kind)

    async def acall(self, request, *, kind="chat", tenant=""):
        return self.call(request, kind=kind, tenant=tenant)


def test_client_is_called_for_the_functions_tenant(cache):
    upstream = RecordingUpstream()

    @semcache.cached(cache=cache, client=upstream, tenant="team-a", namespace="qa")
    def ask(messages, model="gpt-4o-mini"):
        ...

    ask(user("What is the capital of France?"))
    assert upstream.tenants == ["team-a|qa"]  # the same tenant its hits are counted under
    assert set(cache.stats()["by_tenant"]) == {"team-a|qa"}
