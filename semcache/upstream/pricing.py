"""Prices per model, in US dollars per million tokens, for "cost saved" and dollar budgets.

The table holds the list prices (standard tier; the base tier where a price rises past a context
length) of OpenAI, Anthropic, Google Gemini, DeepSeek, Qwen (Alibaba), Moonshot and Zhipu models
as of ``PRICES_AS_OF``. They were compiled from the data of ``genai-prices`` 0.2.5 (Pydantic's
maintained, offline price list, https://github.com/pydantic/genai-prices) and the providers' pricing
pages; Qwen's are Alibaba Cloud Model Studio's international prices as OpenRouter lists them.
Prices change: ``tests/test_pricing.py`` fails once the table is older than ``MAX_AGE_DAYS``, so
someone re-checks it. Users override or extend it with ``Pricing({...})``, the ``pricing`` setting
(a JSON file ``{"model": {"input": 0.15, "output": 0.60}}``) or a route's ``prices``.

A model with no price is *unpriced*: ``price()`` returns None, ``cost()`` 0.0 (a budget cannot
count it), and the stats count it apart (``unpriced_*``) and show its cost as None ("unpriced"),
never as $0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

__all__ = ["DEFAULT_PRICES", "MAX_AGE_DAYS", "PRICES_AS_OF", "Price", "Pricing"]

PRICES_AS_OF = "2026-12-07"
MAX_AGE_DAYS = 120  # the table is re-checked at least this often (a test fails past it)


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5.5": Price(5.00, 30.00),
    "gpt-5.4": Price(2.50, 15.00),
    "gpt-5.4-mini": Price(0.75, 4.50),
    "gpt-5.4-nano": Price(0.20, 1.25),
    "gpt-5.2": Price(1.75, 14.00),
    "gpt-5.1": Price(1.25, 10.00),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-3.5-turbo-instruct": Price(1.50, 2.00),
    "o1": Price(15.00, 60.00),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
    # Anthropic
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4-0": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4-6": Price(3.00, 15.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4-0": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-haiku": Price(0.25, 1.25),
    # Google Gemini
    "gemini-3-pro-preview": Price(2.00, 12.00),
    "gemini-3-flash-preview": Price(0.50, 3.00),
    "gemini-2.5-pro": Price(1.25, 10.00),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    "gemini-2.0-flash": Price(0.10, 0.40),
    "gemini-2.0-flash-lite": Price(0.075, 0.30),
    "gemini-embedding-001": Price(0.15, 0.0),
    # DeepSeek
    "deepseek-chat": Price(0.27, 1.10),
    "deepseek-reasoner": Price(0.55, 2.19),
    # Qwen (Alibaba Cloud Model Studio, international)
    "qwen-max": Price(1.60, 6.40),
    "qwen3-max": Price(1.20, 6.00),
    "qwen-plus": Price(0.26, 0.78),
    "qwen-turbo": Price(0.05, 0.20),
    "qwen-flash": Price(0.05, 0.40),
    # Moonshot, Zhipu
    "kimi-k2.6": Price(0.95, 4.00),
    "glm-4.5": Price(0.60, 2.20),
}


def _snapshot(suffix: str) -> bool:
    """Whether what follows a model's name marks a snapshot of it: a date, ``latest``, ``preview``, ``exp``."""
    return suffix[:1].isdigit() or suffix.split("-")[0] in ("latest", "preview", "exp")


class Pricing:
    """Look up a model's price; dated snapshots (``gpt-4o-2024-08-06``) fall back to their family."""

    def __init__(self, overrides: Mapping[str, Price | Mapping[str, float]] | None = None, *, base: Mapping[str, Price] = DEFAULT_PRICES) -> None:
        self._prices = dict(base)
        for model, price in (overrides or {}).items():
            if not isinstance(price, Price):
                try:
                    price = Price(float(price["input"]), float(price["output"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ConfigError(f"price of {model!r} needs numeric 'input' and 'output' (USD per 1M tokens), got {price!r}") from exc
            self._prices[model] = price

    @classmethod
    def from_file(cls, path: str | Path) -> "Pricing":
        try:
            return cls(json.loads(Path(path).read_text()))
        except FileNotFoundError as exc:
            raise ConfigError(f"pricing file {str(path)!r} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"pricing file {str(path)!r} is not valid JSON: {exc}") from exc

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        if model in self._prices:
            return self._prices[model]
        if "/" in model:  # "models/gemini-2.5-flash", "qwen/qwen-plus": the provider's own name
            return self.price(model.rsplit("/", 1)[1])
        # A dated snapshot of a known model, by its longest known prefix: "gpt-4o-mini-2024-07-18" ->
        # "gpt-4o-mini", not "gpt-4o". Only a date or a release tag may follow: "o1-pro" is not "o1"
        # (ten times the price), so it is unpriced rather than priced wrong.
        family = max((m for m in self._prices if model.startswith(m + "-") and _snapshot(model[len(m) + 1:])),
                     key=len, default=None)
        return self._prices[family] if family else None

    def cost(self, model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
        """Return the dollar cost of a call; 0.0 for an unpriced model (``priced`` tells them apart)."""
        price = self.price(model)
        return price.cost(prompt_tokens, completion_tokens) if price else 0.0

    def priced(self, model: str | None) -> bool:
        """Whether ``model`` has a price (an unpriced one is reported as unpriced, never as $0)."""
        return self.price(model) is not None

    def with_overrides(self, overrides: Mapping[str, Price | Mapping[str, float]]) -> "Pricing":
        """Return a copy with ``overrides`` added (they win)."""
        return Pricing(overrides, base=self._prices)
