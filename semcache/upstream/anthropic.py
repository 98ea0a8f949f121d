"""What is particular to Anthropic's Messages API on the way upstream: its auth headers, its
billing refusals, and its streamed usage. Pure, apart from ``openai.Omit`` (the one SDK sends both).

The upstream client speaks to Anthropic with the same openai SDK transport (``post`` of the body as
is), so that pacing, retries, failover and error translation stay one piece of code; only these
differ. Anthropic authenticates with ``x-api-key`` and ``anthropic-version``, never a bearer token.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterator, Mapping

import openai

__all__ = ["ANTHROPIC_VERSION", "anthropic_headers", "forwarding", "is_low_balance", "stream_usage"]

ANTHROPIC_VERSION = "2023-06-01"  # the one version of the Messages API (features come as anthropic-beta)

# A prepaid balance that ran out is a 400 invalid_request_error whose message says so: billing,
# never retried (a retry only burns attempts; see docs/providers.md).
_LOW_BALANCE = ("credit balance is too low", "purchase credits")


# The caller's anthropic-beta header (features such as interleaved thinking or a longer context),
# forwarded with its request's Messages call; it is part of the request's partition too (the sidecar).
_BETA: ContextVar[str | None] = ContextVar("semcache_anthropic_beta", default=None)


@contextlib.contextmanager
def forwarding(anthropic_beta: str | None) -> Iterator[None]:
    """Within the block, Messages calls carry ``anthropic-beta: <anthropic_beta>`` (None: none)."""
    token = _BETA.set(anthropic_beta)
    try:
        yield
    finally:
        _BETA.reset(token)


def anthropic_headers(api_key: str) -> dict[str, Any]:
    """Return the per-request headers of a Messages API call: the key as ``x-api-key``, no bearer, the caller's beta."""
    headers: dict[str, Any] = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION, "Authorization": openai.Omit()}
    beta = _BETA.get()
    if beta:
        headers["anthropic-beta"] = beta
    return headers


def is_low_balance(message: str | None) -> bool:
    """Whether an error message says the account cannot pay (Anthropic's 400 for a spent balance)."""
    text = (message or "").lower()
    return any(phrase in text for phrase in _LOW_BALANCE)


def stream_usage(event: Mapping[str, Any], got: tuple[int, int] | None) -> tuple[int, int] | None:
    """Return (input, output) tokens known after one Messages stream event.

    ``message_start`` carries the input tokens (and an output count of 1 or so); ``message_delta``
    carries the final output count, and lately the input count again. Each number seen last wins.
    """
    usage = event.get("usage")
    if not isinstance(usage, Mapping) and isinstance(event.get("message"), Mapping):
        usage = event["message"].get("usage")
    if not isinstance(usage, Mapping):
        return got
    prompt, completion = got if got is not None else (None, None)
    if isinstance(usage.get("input_tokens"), int):
        prompt = usage["input_tokens"]
    if isinstance(usage.get("output_tokens"), int):
        completion = usage["output_tokens"]
    if prompt is None:
        return got
    return prompt, completion or 0
