"""A deterministic server that speaks Anthropic's Messages API, for tests and demos.

``POST /v1/messages`` answers as Anthropic does: ``x-api-key`` and ``anthropic-version`` required,
a message (``msg_...``, ``content`` blocks, ``stop_reason``, ``usage`` with input/output tokens), or
with ``"stream": true`` the named SSE events (``message_start``, ``content_block_start``, ``ping``,
``content_block_delta``..., ``content_block_stop``, ``message_delta``, ``message_stop``). The text is
derived from a hash of the request (model, system, messages, tools), as in the OpenAI mock, and a
``tool_choice`` of ``{"type": "tool", "name": ...}`` or ``{"type": "any"}`` answers with a
``tool_use`` block whose input follows the tool's ``input_schema``.

Every answer carries ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*`` with RFC
3339 resets; over the ``rpm``/``tpm`` buckets (``mock_faults.RateLimits``) it answers 429
``rate_limit_error`` with ``retry-after``. Faults are scripted, so tests are exact:
``POST /mock/script`` with ``[{"fault": "529"}, ...]`` makes the next API requests fail in that order:

    429            rate_limit_error, retry-after RETRY_AFTER (default 1)
    529            overloaded_error
    500            api_error
    billing        400 "Your credit balance is too low ..." (a spent prepaid balance)
    402            billing_error
    403            permission_error
    stream_error   a streamed answer that breaks after its first delta with an ``error`` event

``GET /mock/stats`` reports what was served (by status, by model, by key hash, by anthropic-beta); ``POST /mock/reset``
clears it, the buckets and the script. ``python -m semcache.testing.mock_anthropic --port N`` runs it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import time
from collections import Counter, deque
from typing import Any, Callable, Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from semcache.testing.mock_answers import (
    answer_pieces,
    json_from_schema,
    request_digest,
    seeded_rng,
    sentence_from,
    truncate_answer,
)
from semcache.testing.mock_faults import RateLimits, TokenBucket
from semcache.upstream.tokens import count_message_tokens, count_tokens

__all__ = ["FAULTS", "create_app"]

FAULTS = ("429", "529", "500", "billing", "402", "403", "stream_error")
_LOW_BALANCE = ("Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
                "upgrade or purchase credits.")


def _error(status: int, type_: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def _event(data: dict) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _rfc3339(seconds_from_now: float) -> str:
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=max(0.0, seconds_from_now))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Mock:
    """Limits, script and counters shared by the routes."""

    def __init__(self, rpm: int | None, tpm: int | None, api_key: str | None, timer: Callable[[], float]) -> None:
        self.limits = RateLimits(rpm, tpm, timer=timer)
        self.api_key = api_key
        self.reset()

    def reset(self) -> None:
        self.limits.reset()
        self.script: deque[dict] = deque()
        self.by_status: Counter = Counter()
        self.by_model: Counter = Counter()
        self.by_key: Counter = Counter()
        self.by_beta: Counter = Counter()
        self.served = 0

    def stats(self) -> dict:
        return {"requests": sum(self.by_status.values()), "by_status": dict(self.by_status), "by_model": dict(self.by_model),
                "by_key": dict(self.by_key), "by_beta": dict(self.by_beta), "script_left": len(self.script)}

    def headers(self) -> dict[str, str]:
        """``anthropic-ratelimit-*`` for the buckets that are set (tokens also as input- and output-tokens)."""
        out: dict[str, str] = {}
        for name, bucket in (("requests", self.limits.requests), ("tokens", self.limits.tokens)):
            if bucket is None:
                continue
            names = (name,) if name == "requests" else ("tokens", "input-tokens", "output-tokens")
            for label in names:
                out.update(_bucket_headers(label, bucket))
        return out


def _bucket_headers(label: str, bucket: TokenBucket) -> dict[str, str]:
    level = bucket.available()
    prefix = f"anthropic-ratelimit-{label}-"
    return {prefix + "limit": str(bucket.limit), prefix + "remaining": str(max(0, int(level))),
            prefix + "reset": _rfc3339((bucket.limit - level) * 60.0 / bucket.limit)}


def _invalid(message: str) -> JSONResponse:
    return _error(400, "invalid_request_error", message)


def _validate(body: Any) -> str | None:
    """Return what is wrong with a Messages request, as Anthropic words it, or None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    cap = body.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        return "max_tokens: Field required (a positive integer)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), (str, list)):
            return f"messages.{i}.content: Input should be a valid string or list of content blocks"
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not (
            isinstance(system, list) and all(isinstance(b, dict) and isinstance(b.get("text"), str) for b in system)):
        return "system: Input should be a valid string or list of text blocks"
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)):
        return "tools: Input should be a valid list of tools with a name"
    choice = body.get("tool_choice")
    if choice is not None and not (isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none")):
        return "tool_choice: Input should be an object with type auto, any, tool or none"
    if "stream_options" in body:  # the OpenAI field Anthropic does not know: it refuses extra fields
        return "stream_options: Extra inputs are not permitted"
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))


def _answer(body: dict, rid: str) -> dict:
    """The message for a request: text from its hash, or a tool call when tool_choice asks for one."""
    model, messages = body["model"], body["messages"]
    digest = request_digest(model, body.get("system"), messages, body.get("tools"))
    system = body.get("system")
    prompt = count_message_tokens([{"role": m["role"], "content": _text(m["content"])} for m in messages], model)
    prompt += count_tokens(_text(system), model) if system else 0
    choice, tools = body.get("tool_choice") or {}, [t for t in body.get("tools") or [] if isinstance(t, dict)]
    wanted = choice.get("name") if choice.get("type") == "tool" else (tools[0].get("name") if choice.get("type") == "any" and tools else None)
    tool = next((t for t in tools if t.get("name") == wanted), None)
    if tool is not None:
        arguments = json_from_schema(tool.get("input_schema"), seeded_rng(digest))
        content = [{"type": "tool_use", "id": "toolu_" + digest.hex()[:24], "name": tool["name"], "input": arguments}]
        completion, stop = count_tokens(json.dumps(arguments), model), "tool_use"
    else:
        text, cut = truncate_answer(sentence_from(digest), body["max_tokens"], model)
        content = [{"type": "text", "text": text}]
        completion, stop = count_tokens(text, model), "max_tokens" if cut else "end_turn"
    return {"id": "msg_" + rid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}


def _stream(message: dict, *, break_after_first: bool) -> Iterator[bytes]:
    usage = message["usage"]
    yield _event({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                       "usage": {**usage, "output_tokens": 1}}})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield _event({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            yield _event({"type": "ping"})
            for n, piece in enumerate(answer_pieces(block["text"], message["model"])):
                yield _event({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
                if break_after_first and n == 0:
                    yield _event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return
        else:
            yield _event({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
            raw = json.dumps(block["input"])
            for start in range(0, len(raw), 12):
                yield _event({"type": "content_block_delta", "index": index,
                              "delta": {"type": "input_json_delta", "partial_json": raw[start:start + 12]}})
        yield _event({"type": "content_block_stop", "index": index})
    yield _event({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                  "usage": {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}})
    yield _event({"type": "message_stop"})


def _fault(fault: dict, mock: _Mock) -> Response | None:
    kind = str(fault.get("fault"))
    if kind == "429":
        wait = float(fault.get("retry_after", 1))
        return _error(429, "rate_limit_error", "This request would exceed the rate limit for your organization of 50 "
                      "requests per minute.", {"retry-after": str(max(0, round(wait))), **mock.headers()})
    if kind == "529":
        return _error(529, "overloaded_error", "Overloaded")
    if kind == "500":
        return _error(500, "api_error", "Internal server error")
    if kind == "billing":
        return _invalid(_LOW_BALANCE)
    if kind == "402":
        return _error(402, "billing_error", "Your account has a billing issue.")
    if kind == "403":
        return _error(403, "permission_error", "Your API key does not have permission to use the specified resource.")
    return None  # stream_error: handled by the answer


async def _messages(request: Request) -> Response:
    mock: _Mock = request.app.state.mock
    key = request.headers.get("x-api-key")
    response = await _respond(mock, request, key)
    mock.by_status[str(response.status_code)] += 1
    return response


async def _respond(mock: _Mock, request: Request, key: str | None) -> Response:
    if not key or (mock.api_key is not None and key != mock.api_key) or request.headers.get("authorization"):
        return _error(401, "authentication_error", "invalid x-api-key")
    mock.by_key[hashlib.sha256(key.encode()).hexdigest()[:12]] += 1
    if not request.headers.get("anthropic-version"):
        return _invalid("anthropic-version: header is required")
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _invalid("There was an issue with the JSON body of your request.")
    problem = _validate(body)
    if problem is not None:
        return _invalid(problem)
    fault = mock.script.popleft() if mock.script else {}
    failed = _fault(fault, mock) if fault else None
    if failed is not None:
        return failed
    mock.served += 1
    message = _answer(body, hashlib.sha256(f"{mock.served}".encode()).hexdigest()[:24])
    refusal = mock.limits.admit(message["usage"]["input_tokens"] + body["max_tokens"])
    if refusal is not None:
        return _error(429, "rate_limit_error", f"This request would exceed the rate limit for your organization of "
                      f"{refusal.limit} {'requests' if refusal.kind == 'requests' else 'tokens'} per minute.",
                      {"retry-after": str(max(1, round(refusal.retry_after or 60))), **mock.headers()})
    mock.by_model[body["model"]] += 1
    if request.headers.get("anthropic-beta"):
        mock.by_beta[request.headers["anthropic-beta"]] += 1
    headers = {"request-id": "req_" + message["id"][4:], **mock.headers()}
    if body.get("stream"):
        chunks = list(_stream(message, break_after_first=fault.get("fault") == "stream_error"))

        async def events():
            for chunk in chunks:
                yield chunk
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
    return JSONResponse(message, headers=headers)


async def _count_tokens(request: Request) -> Response:
    mock: _Mock = request.app.state.mock
    key = request.headers.get("x-api-key")
    if not key or (mock.api_key is not None and key != mock.api_key) or request.headers.get("authorization"):
        return _error(401, "authentication_error", "invalid x-api-key")
    body = json.loads(await request.body())
    problem = _validate({**body, "max_tokens": 1}) if isinstance(body, dict) else "request body must be a JSON object"
    if problem is not None:
        return _invalid(problem)
    mock.by_status["count_tokens"] += 1
    return JSONResponse({"input_tokens": _answer({**body, "max_tokens": 1}, "count")["usage"]["input_tokens"]})


async def _script(request: Request) -> Response:
    faults = json.loads(await request.body())
    if not isinstance(faults, list) or not all(isinstance(f, dict) and str(f.get("fault")) in FAULTS for f in faults):
        return _invalid(f"the script is a list of {{\"fault\": one of {FAULTS}}}")
    request.app.state.mock.script.extend(faults)
    return JSONResponse({"scripted": len(request.app.state.mock.script)})


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.mock.stats())


async def _reset(request: Request) -> Response:
    request.app.state.mock.reset()
    return JSONResponse({"reset": True})


def create_app(*, rpm: int | None = None, tpm: int | None = None, api_key: str | None = None,
               timer: Callable[[], float] = time.monotonic) -> Starlette:
    """Return the Messages API mock; its state is ``app.state.mock``. ``api_key``: when set, other keys get 401."""
    app = Starlette(routes=[
        Route("/v1/messages", _messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", _count_tokens, methods=["POST"]),
        Route("/mock/script", _script, methods=["POST"]),
        Route("/mock/stats", _stats, methods=["GET"]),
        Route("/mock/reset", _reset, methods=["POST"]),
    ])
    app.state.mock = _Mock(rpm, tpm, api_key, timer)
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the mock with uvicorn until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--tpm", type=int)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(rpm=args.rpm, tpm=args.tpm), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
