from email.utils import format_datetime
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from semcache.upstream.headers import RateLimitInfo, parse_duration, parse_ratelimit_headers


@pytest.mark.parametrize(
    "text, seconds",
    [("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("0.5s", 0.5), ("2m", 120.0), ("7.66s", 7.66), ("3", 3.0), (" 20ms ", 0.02)],
)
def test_parse_duration_reads_openai_reset_values(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "-1s", "1x", "s", "nan", "inf", "1s2", "m1"])
def test_parse_duration_returns_none_for_garbage(text):
    assert parse_duration(text) is None


def test_parses_every_ratelimit_header_case_insensitively():
    info = parse_ratelimit_headers(
        {
            "X-RateLimit-Limit-Requests": "500",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-remaining-tokens": "29000",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-reset-tokens": "2s",
            "x-should-retry": "False",
        }
    )
    assert info == RateLimitInfo(500, 30000, 499, 29000, 0.12, 2.0, None, False)


def test_retry_after_ms_wins_over_retry_after():
    info = parse_ratelimit_headers({"retry-after-ms": "1500", "retry-after": "9"})
    assert info.retry_after == 1.5


def test_retry_after_seconds_and_http_date():
    assert parse_ratelimit_headers({"retry-after": "7"}).retry_after == 7.0
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, tz=timezone.utc), usegmt=True)
    assert parse_ratelimit_headers({"retry-after": date}, now=now).retry_after == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=timezone.utc), usegmt=True)
    assert parse_ratelimit_headers({"retry-after": past}, now=now).retry_after == 0.0


def test_garbage_values_are_none_and_the_rest_still_parse():
    info = parse_ratelimit_headers(
        {"x-ratelimit-remaining-requests": "lots", "x-ratelimit-remaining-tokens": "12", "retry-after": "tomorrow", "retry-after-ms": "-3", "x-should-retry": "maybe"}
    )
    assert info == RateLimitInfo(remaining_tokens=12)


def test_exhausted_reset_is_the_longest_among_used_up_limits():
    info = RateLimitInfo(remaining_requests=0, remaining_tokens=0, reset_requests=1.0, reset_tokens=6.0)
    assert info.reset_for_exhausted() == 6.0
    assert RateLimitInfo(remaining_requests=3, reset_requests=1.0).reset_for_exhausted() is None


@given(st.dictionaries(st.sampled_from(["x-ratelimit-reset-tokens", "x-ratelimit-remaining-requests", "retry-after", "retry-after-ms", "x-should-retry"]), st.text()))
def test_never_raises_on_any_header_values(headers):
    assert isinstance(parse_ratelimit_headers(headers, now=0.0), RateLimitInfo)
