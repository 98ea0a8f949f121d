import random

import pytest
from hypothesis import given, strategies as st

from semcache.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    QuotaExhausted,
    RateLimited,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from semcache.upstream.headers import RateLimitInfo
from semcache.upstream.retry import RetryPolicy


def status(code, name=None):
    return UpstreamStatusError(f"status {code}", status_code=code, code=name)


@pytest.mark.parametrize(
    "error",
    [status(408), status(409), status(500), status(502), status(503), RateLimited("slow down", retry_after=1.0), UpstreamTimeout("t"), UpstreamConnectionError("c")],
)
def test_transient_errors_are_retried(error):
    assert RetryPolicy().is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        QuotaExhausted("no money", status_code=429, code="insufficient_quota"),
        BudgetExceeded("budget"),
        AuthenticationFailed("key", status_code=401),
        AuthenticationFailed("forbidden", status_code=403),
        status(400),
        status(404, "model_not_found"),
        status(422),
    ],
)
def test_permanent_errors_are_never_retried_even_if_the_header_says_so(error):
    assert not RetryPolicy().is_retryable(error, RateLimitInfo(should_retry=True))


def test_x_should_retry_header_overrides_the_status_rule():
    policy = RetryPolicy()
    assert not policy.is_retryable(status(503), RateLimitInfo(should_retry=False))
    assert policy.is_retryable(status(418), RateLimitInfo(should_retry=True))
    assert not policy.is_retryable(status(418))


def test_wait_prefers_retry_after_then_reset_then_backoff():
    policy = RetryPolicy(rng=random.Random(1))
    limited = RateLimited("slow", retry_after=0.0)
    assert policy.wait(limited, RateLimitInfo(retry_after=1.5, reset_requests=9.0, remaining_requests=0), 1) == 1.5
    assert policy.wait(limited, RateLimitInfo(remaining_requests=0, reset_requests=9.0, remaining_tokens=5, reset_tokens=30.0), 1) == 9.0
    assert policy.wait(limited, RateLimitInfo(reset_requests=4.0, reset_tokens=2.0), 1) == 2.0
    assert 0 <= policy.wait(limited, RateLimitInfo(), 1) <= 0.5


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_full_jitter_bounded_by_cap(attempt, seed):
    policy = RetryPolicy(base=0.5, cap=20.0, rng=random.Random(seed))
    assert 0 <= policy.backoff(attempt) <= min(20.0, 0.5 * 2 ** (attempt - 1))


def test_attempts_and_deadline_bound_retries():
    policy = RetryPolicy(max_attempts=3, deadline=10.0, rng=random.Random(0))
    error = status(503)
    assert policy.next_delay(error, None, 1, 0.0) is not None
    assert policy.next_delay(error, None, 3, 0.0) is None  # attempts spent
    too_long = RateLimitInfo(retry_after=8.0)
    assert policy.next_delay(RateLimited("slow", retry_after=8.0), too_long, 1, 5.0) is None  # would end past the deadline
    assert policy.next_delay(RateLimited("slow", retry_after=8.0), too_long, 1, 1.0) == 8.0
