"""Prices: a dated table kept fresh by this test, family lookups, and unpriced models shown as unpriced."""

from __future__ import annotations

import datetime

import pytest
from click.testing import CliRunner

from semcache import MatchPolicy
from semcache.cli import main
from semcache.upstream.pricing import DEFAULT_PRICES, MAX_AGE_DAYS, PRICES_AS_OF, Price, Pricing


def test_the_price_table_is_not_stale():
    """Fails once the table is older than MAX_AGE_DAYS: re-check the providers' prices, then move PRICES_AS_OF."""
    age = (datetime.date.today() - datetime.date.fromisoformat(PRICES_AS_OF)).days
    assert 0 <= age <= MAX_AGE_DAYS, (f"the price table is dated {PRICES_AS_OF}, {age} days ago: re-check the list prices "
                                      "in semcache/upstream/pricing.py and update PRICES_AS_OF")


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-5-mini", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash",
                                   "gemini-2.5-pro", "deepseek-chat", "deepseek-reasoner", "qwen-plus", "qwen-max"])
def test_the_models_people_use_are_priced(model):
    price = Pricing().price(model)
    assert price is not None and 0 < price.input <= price.output


def test_every_price_is_sane():
    for model, price in DEFAULT_PRICES.items():
        assert 0 <= price.input < 200 and 0 <= price.output < 700, model
        assert price.output >= price.input or price.output == 0, model  # output costs more, embeddings have none


@pytest.mark.parametrize("model, family", [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ("models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("qwen/qwen-plus", "qwen-plus"),
])
def test_snapshots_and_provider_prefixes_find_their_family(model, family):
    assert Pricing().price(model) == DEFAULT_PRICES[family]


@pytest.mark.parametrize("model", ["o1-pro", "gpt-4o-realtime", "my-finetune", "llama-3-70b", ""])
def test_an_unknown_model_or_variant_is_unpriced_not_priced_as_its_cousin(model):
    pricing = Pricing()
    assert pricing.price(model) is None and not pricing.priced(model)
    assert pricing.cost(model, 1000, 1000) == 0.0  # a budget cannot count it; the stats say unpriced


def test_overrides_win_and_keep_the_rest():
    pricing = Pricing().with_overrides({"llama-3-70b": Price(0.5, 0.8), "gpt-4o-mini": {"input": 1, "output": 2}})
    assert pricing.price("llama-3-70b") == Price(0.5, 0.8) and pricing.price("gpt-4o-mini") == Price(1.0, 2.0)
    assert pricing.price("claude-sonnet-4-5") == DEFAULT_PRICES["claude-sonnet-4-5"]


def _answer(text: str):
    return lambda request: {"choices": [{"message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 50}}


def test_an_unpriced_model_shows_as_unpriced_in_stats_and_semcache_stats(make_cache, tmp_path):
    cache = make_cache(policy=MatchPolicy.cosine(0.9))
    for model in ("my-local-llama", "gpt-4o-mini"):
        request = {"model": model, "messages": [{"role": "user", "content": "What is two plus two?"}]}
        cache.complete(request, _answer("Four."))
        assert cache.complete(request, _answer("never called")).status == "hit"
    snapshot = cache.stats()
    assert snapshot["by_model"]["my-local-llama"]["cost_saved_usd"] is None  # never $0
    assert snapshot["by_model"]["my-local-llama"]["unpriced_requests_saved"] == 1
    assert snapshot["by_model"]["gpt-4o-mini"]["cost_saved_usd"] == pytest.approx((100 * 0.15 + 50 * 0.6) / 1e6)
    assert snapshot["total"]["unpriced_requests_saved"] == 1  # the total says part of it had no price
    cache.close()
    result = CliRunner().invoke(main, ["stats", "--cache-dir", str(tmp_path / "cache")], catch_exceptions=False)
    assert result.exit_code == 0
    # Whatever the table's layout: the model is there and its cost reads "unpriced" (gpt-4o-mini's is a number).
    assert "my-local-llama" in result.output and "unpriced" in result.output
