"""Read a request body the sidecar can forward: JSON that any JSON encoder accepts back, fields of the right type.

Pure functions; ``RequestError`` names the field (``messages[1].content[0].text``) and what was
expected, so the sidecar answers 400 instead of failing later: in the key digest (a lone
surrogate), in the token estimate (``max_tokens: "10"``), in the forward (NaN is not JSON), or
in a recursion (nesting deeper than Python's stack). Each of those reached a 500 before
(a fuzz run of 4,365 requests found 404).

``parse_body`` checks the document (JSON, finite numbers, no lone surrogates, at most
``MAX_DEPTH`` levels); ``check_request`` checks the fields the sidecar itself reads. Fields it
does not read pass through untouched: the provider judges them. ``model_id`` checks the id of a
passthrough route (``/v1/models/{id}``) so that no path the caller writes can reach another
upstream route.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

from ..errors import RequestError

__all__ = ["MAX_DEPTH", "check_request", "model_id", "parse_body"]

# Deep enough for any real request (OpenAI caps JSON-schema nesting at 10 levels), far from
# Python's recursion limit (~1000), where json.loads and json.dumps fail with RecursionError.
MAX_DEPTH = 64
_REQUIRED = {"chat": "messages", "completions": "prompt", "responses": "input", "embeddings": "input", "messages": "messages"}
_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_TEXT_PARTS = ("text", "input_text", "output_text")
# A model id as OpenAI and compatible servers write them (gpt-4o-mini, ft:gpt-4o:org:x:id,
# meta-llama/Llama-3-8B): segments of letters, digits and -_.: that never start with a dot, so
# "." and ".." cannot be a segment; no empty segment, no percent sign, bounded length.
_SEGMENT = r"[A-Za-z0-9_:\-][A-Za-z0-9._:\-]*"
_MODEL_ID = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
MAX_MODEL_ID = 256


class _NonFinite:
    """What the parser returns for ``NaN``/``Infinity``/``-Infinity``: found and named by the walk."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)  # 1e400 parses as inf


def parse_body(raw: bytes) -> dict:
    """Return the JSON object in ``raw``; raise ``RequestError`` naming the field that cannot be forwarded."""
    try:
        body = json.loads(raw, parse_constant=_NonFinite, parse_float=_parse_float)
    except RecursionError:
        raise RequestError(f"the request body is nested deeper than {MAX_DEPTH} levels", field="body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}", field="body")
    _walk(body)
    return body


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _check_text(text: str, path: str, what: str = "") -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # The message names the path only: the text itself cannot be encoded, not even in an error.
            raise RequestError(f"{what}{path or 'body'} contains a lone surrogate (\\ud800-\\udfff), which is not text",
                               field=path or "body") from None


def _walk(body: dict) -> None:
    """Check every value iteratively (no recursion): depth, numbers, strings and keys."""
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, _NonFinite):
            raise RequestError(f"{path} is {value.text}: JSON numbers must be finite", field=path)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise RequestError(f"{path} is nested deeper than {MAX_DEPTH} levels", field=path)
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, path, "a key of ")
                    stack.append((item, _child(path, key), depth + 1))
            else:
                stack.extend((item, _child(path, i), depth + 1) for i, item in enumerate(value))


def _positive_int(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise RequestError(f"{name} must be a positive integer, got {value!r}", field=name)


def _text_parts(items: Any, field: str) -> None:
    """Text parts of every message (``[i].content[j].text``) must be strings: token counting reads them all."""
    if not isinstance(items, list):
        return  # the key (keys.normalize) names a messages/input that is not a list
    for i, item in enumerate(items):
        content = item.get("content") if isinstance(item, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS and not isinstance(part.get("text"), str):
                name = f"{field}[{i}].content[{j}].text"
                raise RequestError(f"{name} must be a string, got {type(part.get('text')).__name__}", field=name)


def check_request(body: Mapping[str, Any], kind: str) -> None:
    """Raise ``RequestError`` naming the first field of a ``kind`` request the sidecar cannot use."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("missing required parameter 'model' (a string)", field="model")
    required = _REQUIRED[kind]
    if body.get(required) is None:
        raise RequestError(f"missing required parameter {required!r}", field=required)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(f"stream must be true or false, got {stream!r}", field="stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, Mapping):
            raise RequestError(f"stream_options must be an object, got {type(options).__name__}", field="stream_options")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise RequestError(f"stream_options.include_usage must be true or false, got {usage!r}",
                               field="stream_options.include_usage")
    for name in _CAPS:
        _positive_int(body, name)
    if kind in ("chat", "messages"):
        _text_parts(body.get("messages"), "messages")
    elif kind == "responses":
        _text_parts(body.get("input"), "input")


def model_id(raw_path: bytes, prefix: bytes = b"/v1/models/") -> str:
    """Return the model id of a raw (still percent-encoded) ``/v1/models/{id}`` path; raise ``RequestError``.

    The raw path is checked, not the decoded one: ``%2e%2e`` and ``%2F`` are refused as written.
    """
    text = (raw_path[len(prefix):] if raw_path.startswith(prefix) else raw_path).decode("latin-1")
    if not raw_path.startswith(prefix) or len(text) > MAX_MODEL_ID or not _MODEL_ID.fullmatch(text):
        shown = text if len(text) <= 80 else text[:80] + "..."
        raise RequestError(f"invalid model id {shown!r}: letters, digits and -_.:/ only, no '.' or '..' segment, "
                           f"at most {MAX_MODEL_ID} characters", field="model")
    return text
