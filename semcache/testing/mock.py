"""A deterministic OpenAI-compatible server for demos, tests and benchmarks: ``semcache mock-upstream``.

Answers are derived from a hash of the request (model, messages, tools, response format), so
the same request always gets the same answer, different requests different answers, and the
answer does not depend on the server's ``seed``: two mock instances agree. ``max_tokens``
truncates that answer. Usage is counted with tiktoken (``semcache.upstream.tokens``). Any
model name is served; ``/v1/models`` lists a few well-known ones.

Chat answers with a tool call when ``tool_choice`` names a function or is ``"required"``, or
when it is ``"auto"``/absent and the last user message mentions a tool by name; the arguments
are JSON built from the tool's parameter schema. ``response_format`` ``json_object`` answers
``{"answer": ...}``; ``json_schema`` answers an object of that schema.

Limits are token buckets (``mock_faults.TokenBucket``): RPM and TPM each allow their full limit
in a burst and refill continuously over 60 s. A request costs one request and its prompt tokens
plus ``max_tokens`` (else ``DEFAULT_MAX_TOKENS``), as OpenAI counts it at admission; a refused
request consumes nothing. Faults are drawn after validation, before the limits, and consume
nothing.

``GET /mock/stats`` reports what the mock served; ``POST /mock/reset`` clears the stats and the
buckets and restarts the fault sequence. Neither is counted nor limited.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import time
from collections import Counter
from typing import Any, Awaitable, Callable, Iterator

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from semcache.errors import ConfigError
from semcache.testing.mock_answers import (
    answer_pieces,
    chat_choice,
    check_content,
    check_stream,
    content_text,
    json_from_schema,
    request_digest,
    seeded_rng,
    sentence_from,
    sse_chunk,
    stream_chat,
    truncate_answer,
    validate_chat,
)
from semcache.testing.mock_intent import IntentAnswers
from semcache.testing.mock_faults import (
    JSON_PARSE_ERROR,
    FaultPlan,
    Invalid,
    RateLimits,
    check_field,
    error_body,
    fault_reply,
    parse_faults,
    refusal_body,
    retry_headers,
)
from semcache.upstream.tokens import count_message_tokens, count_tokens

__all__ = ["DEFAULT_MAX_TOKENS", "MODELS", "create_app", "serve"]

logger = logging.getLogger("semcache")

DEFAULT_MAX_TOKENS = 256  # the reservation semcache's own limiter assumes (tokens.estimate_request_tokens)
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo", "gpt-3.5-turbo-instruct",
          "text-embedding-3-small", "text-embedding-3-large")
# --- the app --------------------------------------------------------------------------------------

class _Mock:
    """The mock's state: limits, fault plan, stats and options shared by every route."""

    def __init__(self, *, rpm: int | None, tpm: int | None, latency_ms: float, faults: str, seed: int, slow_s: float,
                 chunk_delay_ms: float,
                 api_key: str | None, embedding_dims: int, timer: Callable[[], float],
                 sleep: Callable[[float], Awaitable[Any]], intents: Any = None) -> None:
        self.intents = intents
        self.limits = RateLimits(rpm, tpm, timer=timer)
        self.plan = FaultPlan(parse_faults(faults), seed=seed, slow_s=slow_s)
        self.latency_s = latency_ms / 1000
        self.chunk_delay_s = chunk_delay_ms / 1000
        self.seed, self.api_key, self.embedding_dims = seed, api_key, embedding_dims
        self.timer, self.sleep = timer, sleep
        self.reset()

    def reset(self) -> None:
        self.limits.reset()
        self.plan.reset()
        self.served = 0
        self.by_route: Counter = Counter()
        self.by_status: Counter = Counter()
        self.by_model: Counter = Counter()
        self.tokens: Counter = Counter()
        self.rate_limited: Counter = Counter()
        self.faults: Counter = Counter()

    def stats(self) -> dict:
        return {
            "requests": sum(self.by_route.values()),
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "by_model": dict(self.by_model),
            "tokens": {"prompt": self.tokens["prompt"], "completion": self.tokens["completion"],
                       "total": self.tokens["prompt"] + self.tokens["completion"]},
            "responses_429": self.by_status["429"],
            "rate_limited": dict(self.rate_limited),
            "faults": dict(self.faults),
        }

    def request_id(self) -> str:
        self.served += 1
        return "req_" + hashlib.sha256(f"{self.seed}:{self.served}".encode()).hexdigest()[:32]


def _error(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def _drop(request: Request) -> Response:
    """Close the client's connection without a response.

    ASGI has no way to abort, so this reaches uvicorn's transport through its ``receive``
    callable; the response returned afterwards goes nowhere (uvicorn ignores sends once
    disconnected). Under another server it falls back to a 200 cut off after the headers,
    which the client also sees as a connection error.
    """
    cycle = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return Response(status_code=200, headers={"content-length": "1000"}, media_type="application/json")
    transport.close()
    for _ in range(100):  # connection_lost runs on the next loop iterations
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    request.state.mock_dropped = True
    return Response(status_code=200)


async def _faulted(mock: _Mock, request: Request, kind: str, seconds: float | None, model: str, stream: bool) -> Response:
    mock.faults[kind] += 1
    if kind == "drop":
        return await _drop(request)
    limit = mock.limits.requests.limit if mock.limits.requests else None
    status, content, media_type, headers = fault_reply(kind, seconds, model, rpm=limit, stream=stream)
    return Response(content, status, headers=headers, media_type=media_type)


Handler = Callable[[_Mock, dict, str], tuple[str, int, int, Callable[[], Response]]]


def _api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route: auth, JSON body, validation, faults, limits, latency, then the handler's answer.

    ``handler(mock, body, request_id)`` validates and returns (model, prompt tokens, reserved completion
    tokens, render) where ``render()`` builds the response and counts its usage.
    """

    async def endpoint(request: Request) -> Response:
        mock: _Mock = request.app.state.mock
        if mock.api_key is not None and request.headers.get("authorization") != f"Bearer {mock.api_key}":
            return _error(401, error_body("Incorrect API key provided. You can find your API key at "
                                          "https://platform.openai.com/account/api-keys.", code="invalid_api_key"))
        try:
            body = _parse(await request.body())
        except (ValueError, UnicodeError, RecursionError):  # as OpenAI: NaN, 1e400 and lone surrogates are not JSON
            return _error(400, error_body(JSON_PARSE_ERROR))
        try:
            if not isinstance(body, dict):
                raise Invalid(JSON_PARSE_ERROR)
            model, prompt_tokens, reserved, render = handler(mock, body, request.state.mock_request_id)
        except Invalid as exc:
            return _error(400, error_body(str(exc), param=exc.param, code=exc.code))
        fault, delay = mock.plan.draw()
        if delay:
            mock.faults["slow"] += 1
        if fault is None:
            # Admission happens on arrival, and a refusal is answered at once, as OpenAI does.
            refusal = mock.limits.admit(prompt_tokens + reserved)
            if refusal is not None:
                mock.rate_limited[refusal.kind] += 1
                headers = retry_headers(refusal.retry_after) if refusal.retry_after is not None else None
                return _error(429, refusal_body(refusal, model), headers)
        if mock.latency_s + delay:
            await mock.sleep(mock.latency_s + delay)
        if fault is not None:
            return await _faulted(mock, request, fault.kind, fault.seconds, model, bool(body.get("stream")))
        mock.by_model[model] += 1
        return render()

    return endpoint


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"not a JSON value: {text}")


def _parse(raw: bytes) -> Any:
    """Parse a body as strictly as OpenAI does: no NaN/Infinity, finite numbers, text that is UTF-8."""
    body = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # raises UnicodeEncodeError for a lone surrogate
    return body


def _usage(mock: _Mock, prompt: int, completion: int) -> dict:
    mock.tokens["prompt"] += prompt
    mock.tokens["completion"] += completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}


def _sse(mock: _Mock, chunks: Iterator[bytes]) -> StreamingResponse:
    async def body():  # an async generator keeps Starlette from moving each chunk to a thread
        for i, chunk in enumerate(chunks):
            if i and mock.chunk_delay_s:
                await mock.sleep(mock.chunk_delay_s)
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _chat(mock: _Mock, body: dict, rid: str):
    model, messages, n, limit = validate_chat(body)
    prompt = count_message_tokens(messages, model)
    results = [chat_choice(body, messages, i, model, limit, mock.intents) for i in range(n)]
    base = {"id": "chatcmpl-" + rid[4:], "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_mock", "service_tier": "default"}

    def render() -> Response:
        choices = [choice for choice, _ in results]
        usage = _usage(mock, prompt, sum(used for _, used in results))
        if body.get("stream"):
            return _sse(mock, stream_chat(base, choices, usage, _include_usage(body), model))
        return JSONResponse({**base, "choices": choices, "usage": usage})

    return model, prompt, (limit or DEFAULT_MAX_TOKENS) * n, render


def _completions(mock: _Mock, body: dict, rid: str):
    model = check_field(body, "model", "string", required=True)
    prompts = body.get("prompt")
    if prompts is None:
        raise Invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise Invalid("Invalid 'prompt': expected a string or a non-empty array of strings.", "prompt", "invalid_type")
    n = check_field(body, "n", "integer", minimum=1, maximum=128) or 1
    limit = check_field(body, "max_tokens", "integer", minimum=1)
    limit = 16 if limit is None else limit  # the legacy endpoint's real default
    check_stream(body)
    prompt = sum(count_tokens(p, model) for p in prompts)
    choices, completion = [], 0
    for j, text in enumerate(prompts):
        for k in range(n):
            answer, cut = truncate_answer(" " + sentence_from(request_digest(model, text, k)), limit, model)
            completion += count_tokens(answer, model)
            choices.append({"text": answer, "index": j * n + k, "logprobs": None, "finish_reason": "length" if cut else "stop"})
    base = {"id": "cmpl-" + rid[4:], "object": "text_completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_mock"}

    def stream(usage: dict) -> Iterator[bytes]:
        for choice in choices:
            for piece in answer_pieces(choice["text"], model):
                yield sse_chunk(base, [{**choice, "text": piece, "finish_reason": None}])
            yield sse_chunk(base, [{**choice, "text": ""}])
        if _include_usage(body):
            yield sse_chunk(base, [], usage)
        yield b"data: [DONE]\n\n"

    def render() -> Response:
        usage = _usage(mock, prompt, completion)
        if body.get("stream"):
            return _sse(mock, stream(usage))
        return JSONResponse({**base, "choices": choices, "usage": usage})

    return model, prompt, limit * n * len(prompts), render


def _response_messages(body: dict) -> list[dict]:
    """Turn a Responses API request's ``instructions`` and ``input`` into chat messages."""
    instructions = check_field(body, "instructions", "string")
    messages = [{"role": "system", "content": instructions}] if instructions is not None else []
    items = body.get("input")
    if isinstance(items, str):
        return messages + [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise Invalid("Invalid 'input': expected a string or a non-empty array of input items.", "input", "invalid_type")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]", "invalid_type")
        if "role" in item:
            if item["role"] not in ("user", "assistant", "system", "developer"):
                raise Invalid(f"Invalid value for 'input[{i}].role': expected one of user, assistant, system, developer.",
                              f"input[{i}].role", "invalid_value")
            check_content(item.get("content"), f"input[{i}].content", required=True)
            messages.append({"role": item["role"], "content": content_text(item.get("content"))})
        elif item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
    return messages


def _responses(mock: _Mock, body: dict, rid: str):
    model = check_field(body, "model", "string", required=True)
    if body.get("input") is None:
        raise Invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    messages = _response_messages(body)
    limit = check_field(body, "max_output_tokens", "integer", minimum=16)
    check_stream(body)
    fmt = check_field(check_field(body, "text", "object") or {}, "format", "object") or {}
    if fmt.get("type") == "json_schema":
        check_field(fmt, "schema", "object")
    digest = request_digest(model, messages, fmt)
    if fmt.get("type") == "json_object":
        text = json.dumps({"answer": sentence_from(digest)})
    elif fmt.get("type") == "json_schema":
        text = json.dumps(json_from_schema(fmt.get("schema") or {}, seeded_rng(digest)))
    else:
        text = sentence_from(digest)
    text, cut = truncate_answer(text, limit, model)
    prompt, completion = count_message_tokens(messages, model), count_tokens(text, model)
    message = {"id": "msg_" + digest.hex()[:24], "type": "message", "status": "incomplete" if cut else "completed",
               "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}

    def obj(status: str, output: list, usage: dict | None) -> dict:
        return {"id": "resp_" + rid[4:], "object": "response", "created_at": int(time.time()), "status": status,
                "model": model, "output": output, "usage": usage, "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if cut and status == "incomplete" else None,
                "instructions": body.get("instructions"), "max_output_tokens": limit, "parallel_tool_calls": True,
                "previous_response_id": None, "temperature": body.get("temperature", 1.0), "text": {"format": fmt or {"type": "text"}},
                "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools", []), "top_p": body.get("top_p", 1.0),
                "truncation": "disabled", "metadata": body.get("metadata") or {}}

    def stream(final: dict) -> Iterator[bytes]:
        seq = iter(range(1_000_000))
        ids = {"item_id": message["id"], "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events = [("response.created", {"response": obj("in_progress", [], None)}),
                  ("response.in_progress", {"response": obj("in_progress", [], None)}),
                  ("response.output_item.added", {"output_index": 0, "item": {**message, "status": "in_progress", "content": []}}),
                  ("response.content_part.added", {**ids, "part": part})]
        events += [("response.output_text.delta", {**ids, "delta": piece, "logprobs": []}) for piece in answer_pieces(text, model)]
        events += [("response.output_text.done", {**ids, "text": text, "logprobs": []}),
                   ("response.content_part.done", {**ids, "part": message["content"][0]}),
                   ("response.output_item.done", {"output_index": 0, "item": message}),
                   ("response.incomplete" if cut else "response.completed", {"response": final})]
        for kind, data in events:
            payload = json.dumps({"type": kind, "sequence_number": next(seq), **data})
            yield f"event: {kind}\ndata: {payload}\n\n".encode()

    def render() -> Response:
        _usage(mock, prompt, completion)
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": completion,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}
        final = obj("incomplete" if cut else "completed", [message], usage)
        return _sse(mock, stream(final)) if body.get("stream") else JSONResponse(final)

    return model, prompt, limit or DEFAULT_MAX_TOKENS, render


def _vector(model: str, item: Any, dims: int) -> np.ndarray:
    """Return a deterministic unit vector for one input, seeded by the model and the input."""
    v = np.random.default_rng(int.from_bytes(request_digest(model, item)[:8], "big")).standard_normal(dims)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _embeddings(mock: _Mock, body: dict, rid: str):
    model = check_field(body, "model", "string", required=True)
    raw = body.get("input")
    if raw is None:
        raise Invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)):
        raw = [raw]
    valid = isinstance(raw, list) and 0 < len(raw) <= 2048 and all(
        (isinstance(x, str) and x) or (isinstance(x, list) and x and all(isinstance(t, int) for t in x)) for x in raw)
    if not valid:
        raise Invalid("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "input")
    dims = check_field(body, "dimensions", "integer", minimum=1, maximum=4096) or mock.embedding_dims
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise Invalid("Invalid value for 'encoding_format': expected 'float' or 'base64'.", "encoding_format", "invalid_value")
    prompt = sum(count_tokens(x, model) if isinstance(x, str) else len(x) for x in raw)

    def render() -> Response:
        data = []
        for i, item in enumerate(raw):
            v = _vector(model, item, dims)
            value = base64.b64encode(v.astype("<f4").tobytes()).decode() if encoding == "base64" else [float(x) for x in v]
            data.append({"object": "embedding", "index": i, "embedding": value})
        _usage(mock, prompt, 0)
        return JSONResponse({"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})

    return model, prompt, 0, render


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


async def _list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [_model(m) for m in MODELS]})


async def _get_model(request: Request) -> Response:
    name = request.path_params["model"]
    if name not in MODELS:
        return _error(404, error_body(f"The model '{name}' does not exist", param="model", code="model_not_found"))
    return JSONResponse(_model(name))


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.mock.stats())


async def _reset(request: Request) -> Response:
    request.app.state.mock.reset()
    return JSONResponse({"reset": True})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = f"Invalid URL ({request.method} {request.url.path})" if status in (404, 405) else str(getattr(exc, "detail", exc))
    return _error(status, error_body(message))


_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/models")


class _Envelope:
    """Give every response ``x-request-id``, ``openai-processing-ms`` and the rate-limit headers; count it."""

    def __init__(self, app, mock: _Mock) -> None:
        self.app, self.mock = app, mock

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        mock, path = self.mock, scope["path"]
        counted = not path.startswith("/mock/")
        rid, started = mock.request_id(), mock.timer()
        state = scope.setdefault("state", {})
        state["mock_request_id"] = rid
        if counted:
            mock.by_route[path if path in _ROUTES else "/v1/models/{model}" if path.startswith("/v1/models/") else "other"] += 1

        async def stamped(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = rid
                headers["openai-processing-ms"] = str(max(0, round((mock.timer() - started) * 1000)))
                headers["openai-version"] = "2020-10-01"
                for name, value in mock.limits.headers().items():
                    headers[name] = value
                if counted:
                    mock.by_status["dropped" if state.get("mock_dropped") else str(message["status"])] += 1
            await send(message)

        await self.app(scope, receive, stamped)


def create_app(*, rpm: int | None = None, tpm: int | None = None, latency_ms: float = 0, faults: str = "", seed: int = 0,
               timer: Callable[[], float] = time.monotonic, slow_s: float = 2.0, api_key: str | None = None,
               embedding_dims: int = 64, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
               chunk_delay_ms: float = 0, intents: Any = None) -> Starlette:
    """Return the mock upstream as a Starlette app; its state is ``app.state.mock``.

    ``rpm``/``tpm``: limits (None: unlimited). ``latency_ms``: added to every API request;
    ``chunk_delay_ms``: between two events of a streamed answer (a slow stream).
    ``faults``: a spec for ``mock_faults.parse_faults``, drawn from ``random.Random(seed)``;
    ``slow_s`` is the delay of ``slow`` faults without their own. ``api_key``: when set, other
    keys get 401. ``timer`` drives the limits; ``sleep`` the latency. ``intents``: a
    ``mock_intent.IntentAnswers`` (or the path of a ``{"text", "group"}`` JSONL file) whose texts
    get their intent's one answer, reworded per request. Raises ``ConfigError``.
    """
    if isinstance(intents, str) or hasattr(intents, "__fspath__"):
        intents = IntentAnswers.from_file(intents)
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
    for name, value in (("latency_ms", latency_ms), ("slow_s", slow_s), ("chunk_delay_ms", chunk_delay_ms)):
        if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if not isinstance(embedding_dims, int) or embedding_dims <= 0:
        raise ConfigError(f"embedding_dims must be a positive integer, got {embedding_dims!r}")
    mock = _Mock(rpm=rpm, tpm=tpm, latency_ms=latency_ms, faults=faults, seed=seed, slow_s=slow_s, api_key=api_key,
                 embedding_dims=embedding_dims, timer=timer, sleep=sleep, chunk_delay_ms=chunk_delay_ms,
                 intents=intents)
    routes = [
        Route("/v1/chat/completions", _api(_chat), methods=["POST"]),
        Route("/v1/completions", _api(_completions), methods=["POST"]),
        Route("/v1/responses", _api(_responses), methods=["POST"]),
        Route("/v1/embeddings", _api(_embeddings), methods=["POST"]),
        Route("/v1/models", _list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", _get_model, methods=["GET"]),
        Route("/mock/stats", _stats, methods=["GET"]),
        Route("/mock/reset", _reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Envelope, mock=mock)],
                    exception_handlers={HTTPException: _http_error})
    app.state.mock = mock
    return app


def serve(host: str = "127.0.0.1", port: int = 8099, *, rpm: int | None = None, tpm: int | None = None,
          latency_ms: float = 0, faults: str = "", seed: int = 0, slow_s: float = 2.0, api_key: str | None = None,
          intents: str | None = None) -> None:
    """Run the mock upstream with uvicorn until interrupted (``semcache mock-upstream``); raises ``ConfigError``."""
    import uvicorn

    app = create_app(rpm=rpm, tpm=tpm, latency_ms=latency_ms, faults=faults, seed=seed, slow_s=slow_s, api_key=api_key,
                     intents=intents)
    logger.info("mock upstream on http://%s:%d/v1 (rpm=%s tpm=%s faults=%r seed=%d)", host, port, rpm, tpm, faults, seed)
    uvicorn.run(app, host=host, port=port, log_level="info")
