"""The upstream client against Anthropic's answers: its auth headers, rate-limit headers and error classes.

The provider is a plain function behind httpx2's MockTransport (as httpx's own tests do); the client
under test is the real one, built on the real openai SDK transport.
"""

from __future__ import annotations

import json

import httpx2
import pytest

from semcache.errors import AuthenticationFailed, QuotaExhausted, RateLimited, UpstreamStatusError
from semcache.upstream.client import Endpoint, OpenAIUpstream, translate_error
from semcache.upstream.headers import parse_ratelimit_headers
from semcache.upstream.retry import RetryPolicy

KEY = "sk-ant-secret"
REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
           "content": [{"type": "text", "text": "Hello."}], "usage": {"input_tokens": 8, "output_tokens": 3}}


def _error(status: int, type_: str, message: str, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json={"type": "error", "error": {"type": type_, "message": message}}, headers=headers)


def upstream(replies: list, clock, seen: list | None = None, attempts: int = 4) -> OpenAIUpstream:
    def provider(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return replies.pop(0)

    return OpenAIUpstream(Endpoint("http://anthropic.test/v1", KEY, api="anthropic"), retry=RetryPolicy(max_attempts=attempts, deadline=600),
                          timer=clock, sleep=clock.sleep, http_client=httpx2.Client(transport=httpx2.MockTransport(provider)))


def test_the_messages_api_is_sent_with_x_api_key_and_no_bearer(clock):
    seen: list = []
    answer = upstream([httpx2.Response(200, json=MESSAGE)], clock, seen).call(REQUEST, kind="messages")
    request = seen[0]
    assert request.url.path == "/v1/messages" and json.loads(request.content) == REQUEST
    assert request.headers["x-api-key"] == KEY and request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert (answer.prompt_tokens, answer.completion_tokens) == (8, 3)


def test_a_429_waits_the_retry_after_anthropic_names(clock):
    replies = [_error(429, "rate_limit_error", "Number of requests has exceeded your rate limit", **{"retry-after": "7"}),
               httpx2.Response(200, json=MESSAGE)]
    answer = upstream(replies, clock).call(REQUEST, kind="messages")
    assert answer.attempts == 2 and clock.slept == [7.0]


def test_529_overloaded_is_retried_and_then_given_up(clock):
    replies = [_error(529, "overloaded_error", "Overloaded") for _ in range(3)]
    with pytest.raises(UpstreamStatusError) as caught:
        upstream(replies, clock, attempts=3).call(REQUEST, kind="messages")
    assert caught.value.status_code == 529 and caught.value.code == "overloaded_error" and len(clock.slept) == 2


@pytest.mark.parametrize("reply, error", [
    (_error(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to "
                                          "Plans & Billing to upgrade or purchase credits."), QuotaExhausted),
    (_error(402, "billing_error", "Payment required"), QuotaExhausted),
    (_error(403, "permission_error", "Your API key does not have permission"), AuthenticationFailed),
    (_error(401, "authentication_error", "invalid x-api-key"), AuthenticationFailed),
])
def test_billing_and_permission_errors_are_never_retried(clock, reply, error):
    with pytest.raises(error):
        upstream([reply, httpx2.Response(200, json=MESSAGE)], clock).call(REQUEST, kind="messages")
    assert clock.slept == []


def test_an_ordinary_400_is_not_mistaken_for_billing(clock):
    with pytest.raises(UpstreamStatusError) as caught:
        upstream([_error(400, "invalid_request_error", "max_tokens: Field required")], clock).call(REQUEST, kind="messages")
    assert not isinstance(caught.value, QuotaExhausted) and caught.value.status_code == 400


def test_anthropic_rate_limit_headers_tighten_the_limiter():
    info = parse_ratelimit_headers({
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-12-07T12:00:30Z",
        "anthropic-ratelimit-input-tokens-limit": "30000", "anthropic-ratelimit-input-tokens-remaining": "12000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-07T12:00:10Z",
        "anthropic-ratelimit-output-tokens-limit": "8000", "anthropic-ratelimit-output-tokens-remaining": "500",
        "anthropic-ratelimit-output-tokens-reset": "2026-12-07T12:00:05Z", "retry-after": "30"},
        now=1796644800.0)  # 2026-12-07T12:00:00Z
    assert (info.limit_requests, info.remaining_requests, info.reset_requests) == (50, 0, 30.0)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens) == (8000, 500, 5.0)  # the tighter of the two
    assert info.retry_after == 30.0 and info.reset_for_exhausted() == 30.0


def test_openai_headers_still_win_when_both_are_sent():
    info = parse_ratelimit_headers({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s",
                                    "anthropic-ratelimit-requests-remaining": "0"})
    assert info.remaining_requests == 5 and info.reset_requests == 1.0


def test_a_daily_429_translates_to_daily_limit_reached():
    import openai
    from semcache.errors import DailyLimitReached

    body = {"error": {"message": "Rate limit reached for gpt-4o-mini in organization org-x on tokens per day (TPD): "
                                 "Limit 2000000, Used 2000000, Requested 10. Please try again in 7m12s.",
                      "type": "tokens", "code": "rate_limit_exceeded"}}
    response = httpx2.Response(429, json=body, request=httpx2.Request("POST", "http://x/v1/chat/completions"))
    error, _ = translate_error(openai.RateLimitError("429", response=response, body=body["error"]))
    assert isinstance(error, DailyLimitReached) and isinstance(error, RateLimited) and error.retry_after == 432
