"""The mock upstream's answers: derived from a hash of the request, so they are deterministic.

Same request, same answer; different requests, different answers; and independent of the
server's seed, so two mock instances agree. ``max_tokens`` truncates an answer; streamed
answers are cut into chunks of a few tokens, about what OpenAI sends.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import random
from typing import Any, Iterator

from semcache.testing.mock_faults import Invalid, check_field
from semcache.upstream.tokens import count_tokens, encoding_for

__all__ = ["answer_pieces", "chat_choice", "check_content", "check_stream", "content_text", "json_from_schema", "request_digest", "seeded_rng", "sentence_from", "sse_chunk", "stream_chat", "truncate_answer", "validate_chat"]

_CHUNK_TOKENS = 3  # tokens per streamed content chunk, about what OpenAI sends
_WORDS = ("the", "cache", "answer", "quickly", "model", "token", "request", "returns", "a", "simple", "result",
          "because", "every", "query", "is", "similar", "to", "an", "earlier", "one", "and", "stored", "value",
          "remains", "valid", "until", "it", "expires", "so", "latency", "drops", "while", "quota", "lasts",
          "longer", "for", "users", "who", "ask", "again", "about", "weather", "in", "paris", "today", "with",
          "clear", "skies", "bright", "river", "history", "science", "numbers", "seven", "twelve", "forty")


def request_digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()).digest()


def seeded_rng(digest: bytes) -> random.Random:
    return random.Random(int.from_bytes(digest[:8], "big"))


def sentence_from(digest: bytes) -> str:
    rng = seeded_rng(digest)
    words = [rng.choice(_WORDS) for _ in range(16 + rng.randrange(48))]
    return " ".join(words).capitalize() + "."


def json_from_schema(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """Return a value of a JSON schema's shape (objects, arrays, enums, scalars), chosen by ``rng``.

    Any value is read as a schema: what is not one (an ``enum`` that is not a list, ``properties``
    that are not an object) is ignored rather than failing the request.
    """
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    kind = schema.get("type", "object" if "properties" in schema else "string")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "object" and depth < 5:
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {key: json_from_schema(sub, rng, depth + 1) for key, sub in properties.items()}
    if kind == "array" and depth < 5:
        return [json_from_schema(schema.get("items"), rng, depth + 1)]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return " ".join(rng.choice(_WORDS) for _ in range(2))


def truncate_answer(text: str, limit: int | None, model: str) -> tuple[str, bool]:
    """Cut ``text`` to ``limit`` tokens; return (text, whether it was cut)."""
    if limit is None:
        return text, False
    enc = encoding_for(model)
    tokens = enc.encode(text, disallowed_special=())
    return (enc.decode(tokens[:limit]), True) if len(tokens) > limit else (text, False)


def answer_pieces(text: str, model: str) -> Iterator[str]:
    """Split ``text`` into chunks of a few tokens, never splitting a UTF-8 character."""
    enc = encoding_for(model)
    tokens = enc.encode(text, disallowed_special=())
    decoder = codecs.getincrementaldecoder("utf-8")()
    for i in range(0, len(tokens), _CHUNK_TOKENS):
        piece = decoder.decode(b"".join(enc.decode_single_token_bytes(t) for t in tokens[i:i + _CHUNK_TOKENS]))
        if piece:
            yield piece


def content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


_TEXT_PARTS = ("text", "input_text", "output_text")


def _type_name(value: Any) -> str:
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return "null"


def check_content(content: Any, param: str, *, required: bool = False) -> None:
    """Check a message's content as OpenAI does: a string or an array of part objects whose text parts hold strings."""
    if content is None and not required:
        return
    if not isinstance(content, (str, list)):
        raise Invalid(f"Invalid type for '{param}': expected one of a string or array of objects, but got "
                      f"{'an' if _type_name(content)[0] in 'aeiou' else 'a'} {_type_name(content)} instead.", param, "invalid_type")
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(part, dict):
            raise Invalid(f"Invalid type for '{param}[{j}]': expected an object, but got {_type_name(part)} instead.",
                          f"{param}[{j}]", "invalid_type")
        if part.get("type") in _TEXT_PARTS and not isinstance(part.get("text"), str):
            raise Invalid(f"Invalid type for '{param}[{j}].text': expected a string, but got {_type_name(part.get('text'))} instead.",
                          f"{param}[{j}].text", "invalid_type")


def check_stream(body: dict) -> None:
    """Check ``stream`` (a boolean) and ``stream_options`` (an object whose ``include_usage`` is a boolean)."""
    check_field(body, "stream", "boolean")
    options = check_field(body, "stream_options", "object")
    if options is not None and options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
        raise Invalid("Invalid type for 'stream_options.include_usage': expected a boolean.", "stream_options.include_usage",
                      "invalid_type")


def _check_tools(body: dict) -> None:
    tools = check_field(body, "tools", "array") or []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise Invalid(f"Invalid type for 'tools[{i}]': expected an object.", f"tools[{i}]", "invalid_type")
        function = tool.get("function")
        if function is not None and (not isinstance(function, dict) or not isinstance(function.get("name"), str)):
            raise Invalid(f"Invalid 'tools[{i}].function': expected an object with a string 'name'.", f"tools[{i}].function",
                          "invalid_type")
    choice = body.get("tool_choice")
    if choice is None or choice in ("none", "auto", "required"):
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise Invalid("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice", "invalid_value")


# --- chat completions ---------------------------------------------------------------------------

def _chat_tool(body: dict, messages: list) -> dict | None:
    """Return the tool the answer must call, or None for a text answer."""
    tools = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for tool in tools:
            if tool.get("name") == name:
                return tool
        raise Invalid(f"Invalid value for 'tool_choice': tool '{name}' is not in 'tools'.", "tool_choice", "invalid_value")
    last_user = next((content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "").lower()
    named = next((t for t in tools if str(t.get("name", "")).lower() in last_user
                  or str(t.get("name", "")).lower().replace("_", " ") in last_user), None)
    return named or (tools[0] if choice == "required" else None)


def chat_choice(body: dict, messages: list, index: int, model: str, limit: int | None, intents: Any = None) -> tuple[dict, int]:
    """Return (one chat choice, its completion tokens); ``intents`` (``mock_intent.IntentAnswers``)
    answers a text request whose last user message is in its file with that intent's answer."""
    core = {k: v for k, v in body.items() if k in ("model", "messages", "tools", "tool_choice", "response_format")}
    digest = request_digest(core, index)
    tool = _chat_tool(body, messages)
    if tool is not None:
        arguments = json.dumps(json_from_schema(tool.get("parameters") or {}, seeded_rng(digest)))
        call = {"id": "call_" + digest.hex()[:24], "type": "function", "function": {"name": tool.get("name"), "arguments": arguments}}
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
        used = count_tokens(str(tool.get("name")) + arguments, model)
        return {"index": index, "message": message, "logprobs": None, "finish_reason": "tool_calls"}, used
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        content = json.dumps({"answer": sentence_from(digest)})
    elif fmt.get("type") == "json_schema":
        content = json.dumps(json_from_schema((fmt.get("json_schema") or {}).get("schema") or {}, seeded_rng(digest)))
    else:
        last_user = next((content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        content = (intents.answer(last_user, digest) if intents is not None else None) or sentence_from(digest)
    content, cut = truncate_answer(content, limit, model)
    message = {"role": "assistant", "content": content, "refusal": None}
    return {"index": index, "message": message, "logprobs": None, "finish_reason": "length" if cut else "stop"}, count_tokens(content, model)


def validate_chat(body: dict) -> tuple[str, list, int, int | None]:
    model = check_field(body, "model", "string", required=True)
    messages = check_field(body, "messages", "array", required=True)
    if not messages:
        raise Invalid("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                      "messages", "empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise Invalid(f"Invalid value for 'messages[{i}].role': expected one of system, developer, user, assistant, tool.",
                          f"messages[{i}].role", "invalid_value")
        check_content(message.get("content"), f"messages[{i}].content")
    n = check_field(body, "n", "integer", minimum=1, maximum=128) or 1
    limit = check_field(body, "max_completion_tokens", "integer", minimum=1) or check_field(body, "max_tokens", "integer", minimum=1)
    _check_tools(body)
    check_stream(body)
    fmt = check_field(body, "response_format", "object")
    if fmt is not None and fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise Invalid("Invalid value for 'response_format.type': expected text, json_object or json_schema.",
                      "response_format.type", "invalid_value")
    if fmt is not None and fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
            raise Invalid("Invalid 'response_format.json_schema': expected an object with a 'schema' object.",
                          "response_format.json_schema", "invalid_type")
    return model, messages, n, limit


def sse_chunk(base: dict, choices: list, usage: Any = ...) -> bytes:
    payload = {**base, "choices": choices}
    if usage is not ...:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream_chat(base: dict, choices: list, usage: dict, include_usage: bool, model: str) -> Iterator[bytes]:
    """Yield a chat completion as OpenAI's SSE chunks: role, content or tool-call pieces, finish, usage, [DONE]."""
    extra: dict = {"usage": None} if include_usage else {}
    base = {**base, "object": "chat.completion.chunk"}
    for choice in choices:
        i, message = choice["index"], choice["message"]
        yield sse_chunk(base, [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}], **extra)
        for call in message.get("tool_calls") or []:
            head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
            yield sse_chunk(base, [{"index": i, "delta": {"tool_calls": [head]}, "logprobs": None, "finish_reason": None}], **extra)
            for piece in answer_pieces(call["function"]["arguments"], model):
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                yield sse_chunk(base, [{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}], **extra)
        for piece in answer_pieces(message.get("content") or "", model):
            yield sse_chunk(base, [{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}], **extra)
        yield sse_chunk(base, [{"index": i, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}], **extra)
    if include_usage:
        yield sse_chunk(base, [], usage)
    yield b"data: [DONE]\n\n"


