"""Anthropic's Messages API on the sidecar: its stream events both ways, and its error shape.

Pure functions of dicts, the Messages counterpart of ``streaming`` and ``errors``:

- ``assemble(events)`` turns a streamed answer (``message_start``, ``content_block_start``,
  ``content_block_delta``..., ``content_block_stop``, ``message_delta``, ``message_stop``) into the
  message the non-streaming API returns, which is what the cache stores; None if it was cut off.
- ``replay(message)`` turns a stored message back into those events, named (``event: <type>``).
- ``error_response(exc)`` answers an error as Anthropic does: ``{"type": "error", "error": {"type",
  "message"}}`` with Anthropic's statuses (402 billing_error, 529 overloaded_error, ...), so the
  anthropic SDK raises the class a caller expects and retries only what is worth retrying.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from starlette.responses import JSONResponse

from ..errors import BudgetExceeded, QuotaExhausted, UpstreamStatusError
from . import errors as openai_errors

__all__ = ["assemble", "encode", "error_event", "error_response", "fresh", "replay"]

# Anthropic's error type for each status it uses (https://docs.anthropic.com/en/api/errors).
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error", 429: "rate_limit_error",
          500: "api_error", 502: "api_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error"}
# Fields of a delta appended to the block's field of the same meaning.
_DELTAS = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature",
           "input_json_delta": "partial_json"}


def encode(event: dict) -> bytes:
    """Return one named SSE event, as Anthropic sends them: ``event: <type>`` then ``data: <json>``."""
    try:
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate in an upstream answer: escaped, it is still valid JSON
        payload = json.dumps(event, separators=(",", ":")).encode()
    name = str(event.get("type", "message")).replace("\r", " ").replace("\n", " ")
    return f"event: {name}\n".encode("utf-8", "replace") + b"data: " + payload + b"\n\n"


def fresh(message: Any, new_id: str) -> Any:
    """Return a stored message as a new one: a fresh ``msg_`` id, the rest as stored."""
    return dict(message, id="msg_" + new_id) if isinstance(message, dict) else message


# -- assemble: events -> one message ----------------------------------------------------------

def assemble(events: Iterable[dict]) -> dict | None:
    """Return the message a Messages stream adds up to; None unless it reached ``message_stop``."""
    message: dict | None = None
    blocks: dict[int, dict] = {}
    partial: dict[int, str] = {}
    stopped = False
    for event in events:
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message = dict(event["message"])
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            blocks[event.get("index", len(blocks))] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            index, delta = event.get("index", 0), event["delta"]
            block = blocks.setdefault(index, {"type": "text", "text": ""})
            field = _DELTAS.get(delta.get("type"))
            if field == "partial_json":
                partial[index] = partial.get(index, "") + str(delta.get("partial_json", ""))
            elif field is not None:
                block[field] = str(block.get(field) or "") + str(delta.get(field, ""))
            elif delta.get("type") == "citations_delta":
                block.setdefault("citations", []).append(delta.get("citation"))
        elif kind == "message_delta" and message is not None:
            message.update({k: v for k, v in (event.get("delta") or {}).items()})
            if isinstance(event.get("usage"), dict):
                message["usage"] = {**(message.get("usage") or {}), **event["usage"]}
        elif kind == "message_stop":
            stopped = True
    if message is None or not stopped:
        return None  # cut off: never store half an answer
    for index, text in partial.items():
        try:
            blocks[index]["input"] = json.loads(text) if text else {}
        except ValueError:
            return None  # a tool call whose arguments are not JSON: not an answer to keep
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


# -- replay: one message -> events -------------------------------------------------------------

def replay(message: dict) -> Iterator[bytes]:
    """Yield a stored message as the events of a streamed one, ending with ``message_stop``."""
    usage = dict(message.get("usage") or {})
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": min(1, usage.get("output_tokens", 0) or 0)}}
    yield encode({"type": "message_start", "message": start})
    for index, block in enumerate(message.get("content") or []):
        yield from (encode(event) for event in _block_events(index, block))
    yield encode({"type": "message_delta",
                  "delta": {"stop_reason": message.get("stop_reason") or "end_turn", "stop_sequence": message.get("stop_sequence")},
                  "usage": {"output_tokens": usage.get("output_tokens", 0)}})
    yield encode({"type": "message_stop"})


def _block_events(index: int, block: dict) -> Iterator[dict]:
    kind = block.get("type")
    if kind == "text":
        yield {"type": "content_block_start", "index": index, "content_block": {**block, "text": ""}}
        if block.get("text"):
            yield {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": block["text"]}}
    elif kind == "thinking":
        yield {"type": "content_block_start", "index": index, "content_block": {**block, "thinking": "", "signature": ""}}
        yield {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": block.get("thinking", "")}}
        if block.get("signature"):
            yield {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}}
    elif kind in ("tool_use", "server_tool_use"):
        yield {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
        yield {"type": "content_block_delta", "index": index,
               "delta": {"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}), ensure_ascii=False)}}
    else:  # redacted thinking, tool results of server tools: whole in their start event
        yield {"type": "content_block_start", "index": index, "content_block": block}
    yield {"type": "content_block_stop", "index": index}


# -- errors --------------------------------------------------------------------------------------

def _shape(exc: BaseException, **limits: int | None) -> tuple[int, dict, dict[str, str]]:
    """(status, Anthropic's body, headers) for an exception, from the OpenAI-shaped answer of ``errors``."""
    answer = openai_errors.error_response(exc, **limits)
    status = answer.status_code
    headers = {k: v for k, v in answer.headers.items() if k.startswith(("retry-after", "x-ratelimit-"))}
    if isinstance(exc, (QuotaExhausted, BudgetExceeded)):
        status, headers = 402, {"x-should-retry": "false"}  # billing: the anthropic SDK must not retry it
    elif isinstance(exc, UpstreamStatusError) and exc.status_code == 529:
        status = 529  # overloaded after our retries: the caller's SDK knows what it means
    message = json.loads(answer.body)["error"]["message"]
    return status, {"type": "error", "error": {"type": _TYPES.get(status, "api_error"), "message": message}}, headers


def error_response(exc: BaseException, *, rpm: int | None = None, tpm: int | None = None) -> JSONResponse:
    """Return Anthropic's error answer for an exception (the statuses of ``errors.error_response``)."""
    status, body, headers = _shape(exc, rpm=rpm, tpm=tpm)
    return JSONResponse(body, status_code=status, headers=headers)


def error_event(exc: BaseException) -> bytes:
    """Return the ``error`` event a stream that already sent its headers ends with."""
    return encode(_shape(exc)[1])
