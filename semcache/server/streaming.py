"""Server-sent events both ways: assemble a streamed answer to store it, replay a stored one as a stream.

Pure functions of dicts. ``assemble(kind, chunks)`` turns the chunks of a streamed miss into the
answer the non-streaming API would have given (tool calls included), which is what the cache
stores; ``replay(kind, response, ...)`` turns a stored answer back into the events a streaming
client expects: ``chat.completion.chunk`` events ending in ``data: [DONE]`` (with a usage
chunk when asked), ``text_completion`` chunks, or the Responses API's typed events.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from . import messages

__all__ = ["assemble", "encode", "fresh", "replay", "strip_usage"]

DONE = b"data: [DONE]\n\n"


def encode(kind: str, data: Any) -> bytes:
    """Return one SSE event; the Responses and Messages APIs name their events (``event: <type>``)."""
    if kind == "messages":
        return messages.encode(data)
    try:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate in an upstream answer: escaped, it is still valid JSON
        payload = json.dumps(data, separators=(",", ":")).encode()
    if kind == "responses" and isinstance(data, dict) and isinstance(data.get("type"), str):
        name = data["type"].replace("\r", " ").replace("\n", " ")  # one line, whatever the upstream named it
        return f"event: {name}\n".encode("utf-8", "replace") + b"data: " + payload + b"\n\n"
    return b"data: " + payload + b"\n\n"


def fresh(kind: str, response: dict, new_id: str, now: int) -> dict:
    """Return a stored answer as a new one: a fresh ``id`` and creation time, the rest as stored."""
    if kind == "messages":
        return messages.fresh(response, new_id)
    prefix = {"chat": "chatcmpl-", "completions": "cmpl-", "responses": "resp_"}.get(kind)
    if prefix is None or not isinstance(response, dict):
        return response
    out = dict(response, id=prefix + new_id)
    out["created_at" if kind == "responses" else "created"] = now
    return out


def strip_usage(chunk: dict) -> dict | None:
    """Return a chunk without its ``usage`` (None for the usage-only chunk): for clients that did not ask."""
    if "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}


# -- assemble: chunks -> one answer -----------------------------------------------------------

def assemble(kind: str, chunks: Iterable[dict]) -> dict | None:
    """Return the complete answer the chunks of one stream add up to; None if it never completed."""
    chunks = list(chunks)
    if kind == "messages":
        return messages.assemble(chunks)
    if kind == "responses":
        for chunk in reversed(chunks):
            if chunk.get("type") in ("response.completed", "response.incomplete") and isinstance(chunk.get("response"), dict):
                return chunk["response"]
        return None
    if not chunks:
        return None
    return _assemble_chat(chunks) if kind == "chat" else _assemble_completions(chunks)


_HEAD = ("id", "created", "model", "system_fingerprint", "service_tier")
_SKIP_TOP = frozenset({"choices", "usage", "object"})
# In a delta, these are set, not appended to (everything else that is a string arrives in pieces).
_REPLACED = frozenset({"id", "type", "role", "index", "expires_at", "finish_reason"})


def _head(chunks: list[dict], object_: str) -> dict:
    """The answer's top-level fields: the first chunk's id and time, the last word on the rest
    (provider extras included), as the non-streaming API would return them."""
    head: dict = {}
    for chunk in chunks:
        head.update({k: v for k, v in chunk.items() if k not in _SKIP_TOP and v is not None})
    head.update({k: chunks[0][k] for k in _HEAD if k in chunks[0]})
    return {**head, "object": object_}


def _usage(chunks: list[dict]) -> dict | None:
    return next((c["usage"] for c in reversed(chunks) if isinstance(c.get("usage"), dict)), None)


def _merge(into: dict, delta: dict) -> dict:
    """Add one delta to what came before: strings are appended, lists extended (``tool_calls``
    merged by their ``index``), objects merged the same way, ids and types set."""
    for key, value in delta.items():
        if value is None:
            continue
        old = into.get(key)
        if key == "tool_calls" and isinstance(value, list):
            calls = into.setdefault(key, {})
            for call in value:
                if isinstance(call, dict):
                    _merge(calls.setdefault(call.get("index", len(calls)), {}), call)
        elif isinstance(value, str) and key not in _REPLACED and isinstance(old, str):
            into[key] = old + value
        elif isinstance(value, list) and isinstance(old, list):
            into[key] = old + value
        elif isinstance(value, dict):
            into[key] = _merge(dict(old) if isinstance(old, dict) else {}, value)
        else:
            into[key] = value
    return into


def _assemble_chat(chunks: list[dict]) -> dict | None:
    """Every field the deltas carried -- content, refusal, tool calls, the legacy function_call,
    audio, annotations, provider extras such as reasoning_content -- and every chunk's logprobs."""
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for part in chunk.get("choices") or []:
            index = part.get("index", 0)
            choice = choices.setdefault(index, {"message": {"role": "assistant"}, "finish_reason": None, "logprobs": None, "extra": {}})
            _merge(choice["message"], part.get("delta") or {})
            if isinstance(part.get("logprobs"), dict):
                choice["logprobs"] = _merge(choice["logprobs"] or {}, part["logprobs"])
            choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
            choice["extra"].update({k: v for k, v in part.items() if k not in ("index", "delta", "logprobs", "finish_reason")})
    if not choices or any(c["finish_reason"] is None for c in choices.values()):
        return None  # cut off: never store half an answer
    out = _head(chunks, "chat.completion")
    out["choices"] = []
    for index in sorted(choices):
        c = choices[index]
        message = c["message"]
        if "tool_calls" in message:
            message["tool_calls"] = [{"type": "function", **call} | {"function": {"name": "", "arguments": "", **call.get("function", {})}}
                                     for _, call in sorted(message["tool_calls"].items())]
            for call in message["tool_calls"]:
                call.pop("index", None)
        has_call = "tool_calls" in message or "function_call" in message
        message.setdefault("content", None if has_call else "")
        message.setdefault("refusal", None)
        out["choices"].append({**c["extra"], "index": index, "message": message, "logprobs": c["logprobs"],
                               "finish_reason": c["finish_reason"]})
    out["usage"] = _usage(chunks)
    return out


def _assemble_completions(chunks: list[dict]) -> dict | None:
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for part in chunk.get("choices") or []:
            choice = choices.setdefault(part.get("index", 0), {"text": [], "finish_reason": None, "logprobs": None})
            choice["text"].append(part.get("text") or "")
            choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
            if isinstance(part.get("logprobs"), dict):  # each chunk's tokens, not only the last chunk's
                choice["logprobs"] = _merge(choice["logprobs"] or {}, part["logprobs"])
    if not choices or any(c["finish_reason"] is None for c in choices.values()):
        return None
    out = _head(chunks, "text_completion")
    out["choices"] = [{"index": i, "text": "".join(c["text"]), "logprobs": c["logprobs"], "finish_reason": c["finish_reason"]}
                      for i, c in sorted(choices.items())]
    out["usage"] = _usage(chunks)
    return out


# -- replay: one answer -> events -------------------------------------------------------------

def replay(kind: str, response: dict, *, include_usage: bool = False) -> Iterator[bytes]:
    """Yield a stored answer as the SSE events of a streamed one (ends with ``[DONE]`` where the API does)."""
    if kind == "messages":
        yield from messages.replay(response)
        return
    if kind == "responses":
        for event in _response_events(response):
            yield encode(kind, event)
        return
    base = {k: response[k] for k in ("id", "created", "model", "system_fingerprint", "service_tier") if k in response}
    extra: dict = {"usage": None} if include_usage else {}
    if kind == "chat":
        base["object"] = "chat.completion.chunk"
        for choice in response.get("choices") or []:
            for delta, finish, logprobs in _chat_deltas(choice):
                part = {"index": choice.get("index", 0), "delta": delta, "logprobs": logprobs, "finish_reason": finish}
                yield encode(kind, {**base, "choices": [part], **extra})
    else:
        base["object"] = "text_completion"
        for choice in response.get("choices") or []:
            yield encode(kind, {**base, "choices": [{**choice, "finish_reason": None}], **extra})
            yield encode(kind, {**base, "choices": [{**choice, "text": ""}], **extra})
    if include_usage:
        yield encode(kind, {**base, "choices": [], "usage": response.get("usage")})
    yield DONE


def _chat_deltas(choice: dict) -> Iterator[tuple[dict, str | None, Any]]:
    """The deltas of one stored choice: role, every other field of the message (reasoning, audio,
    annotations, a legacy function_call), tool calls, content with its logprobs, refusal, the end."""
    message = choice.get("message") or {}
    yield {"role": message.get("role", "assistant"), "content": ""}, None, None
    others = {k: v for k, v in message.items() if k not in ("role", "content", "refusal", "tool_calls") and v is not None}
    if others:
        yield others, None, None
    for i, call in enumerate(message.get("tool_calls") or []):
        yield {"tool_calls": [{"index": i, **call}]}, None, None
    if message.get("content"):
        yield {"content": message["content"]}, None, choice.get("logprobs")
    if message.get("refusal"):
        yield {"refusal": message["refusal"]}, None, None
    yield {}, choice.get("finish_reason") or "stop", None


def _response_events(response: dict) -> Iterator[dict]:
    seq = iter(range(1 << 30))
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "sequence_number": next(seq), "response": pending}
    yield {"type": "response.in_progress", "sequence_number": next(seq), "response": pending}
    for index, item in enumerate(response.get("output") or []):
        is_message = item.get("type") == "message"
        opened = {**item, "status": "in_progress", "content": []} if is_message else item
        yield {"type": "response.output_item.added", "sequence_number": next(seq), "output_index": index, "item": opened}
        for part_index, part in enumerate(item.get("content") or [] if is_message else []):
            ids = {"item_id": item.get("id"), "output_index": index, "content_index": part_index}
            if part.get("type") != "output_text":
                yield {"type": "response.content_part.added", "sequence_number": next(seq), **ids, "part": part}
                yield {"type": "response.content_part.done", "sequence_number": next(seq), **ids, "part": part}
                continue
            text = part.get("text", "")
            yield {"type": "response.content_part.added", "sequence_number": next(seq), **ids,
                   "part": {**part, "text": ""}}
            yield {"type": "response.output_text.delta", "sequence_number": next(seq), **ids, "delta": text, "logprobs": []}
            yield {"type": "response.output_text.done", "sequence_number": next(seq), **ids, "text": text, "logprobs": []}
            yield {"type": "response.content_part.done", "sequence_number": next(seq), **ids, "part": part}
        yield {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": index, "item": item}
    final = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
    yield {"type": final, "sequence_number": next(seq), "response": response}
