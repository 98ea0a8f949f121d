"""Prices per model, in US dollars per million tokens, for "cost saved" and dollar budgets.

The table is OpenAI's public list prices (standard tier) as of ``PRICES_AS_OF``. Prices change;
users override or extend it with ``Pricing({...})`` or the ``pricing`` setting (a JSON file
``{"model": {"input": 0.15, "output": 0.60}}``). A model with no price costs 0 and is
reported as unpriced rather than guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "Price", "Pricing"]

PRICES_AS_OF = "2025-06-01"


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.00, 60.00),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
}


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
        # Longest known prefix: "gpt-4o-mini-2024-07-18" -> "gpt-4o-mini", not "gpt-4o".
        family = max((m for m in self._prices if model.startswith(m + "-")), key=len, default=None)
        return self._prices[family] if family else None

    def cost(self, model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
        """Return the dollar cost of a call; 0.0 for an unpriced model."""
        price = self.price(model)
        return price.cost(prompt_tokens, completion_tokens) if price else 0.0
