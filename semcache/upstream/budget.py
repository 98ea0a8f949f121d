"""Stop spending when a daily or monthly token or dollar budget is used up.

``BudgetGuard.check()`` before a call raises ``BudgetExceeded`` once any budget is spent (the
hard stop that turns a service cache-only); ``record(...)`` after a call adds its usage. On
first crossing ``alert_fraction`` of a budget in a period it logs one warning and counts
``budget_alerts``. Periods are UTC calendar days and months; they roll over on the injected
clock (``timer``, Unix seconds). Spending is kept in a ``Ledger`` when one is given (the cache
directory's store: it survives restarts and is shared by every process on the directory), else
in memory, where a restart starts from zero.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Protocol

from ..errors import BudgetExceeded, RequestError
from ..stats import Stats
from .pricing import Pricing

__all__ = ["BudgetGuard", "Ledger"]

log = logging.getLogger("semcache")

_PERIODS = ("day", "month")
_SCALE = {"tokens": 1, "usd": 1_000_000}  # the ledger adds integers: dollars are kept in micro-dollars


class Ledger(Protocol):
    """Totals that several processes add to atomically (``DiskStore`` is one)."""

    def add_total(self, key: str, amount: int) -> int: ...  # add, return the new total

    def total(self, key: str) -> int: ...


def _period_start(period: str, now: float) -> datetime:
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class BudgetGuard:
    """Track token and dollar spending per UTC day and month against optional limits."""

    def __init__(
        self,
        tokens_per_day: int | None = None,
        usd_per_day: float | None = None,
        tokens_per_month: int | None = None,
        usd_per_month: float | None = None,
        alert_fraction: float = 0.8,
        pricing: Pricing | None = None,
        timer: Callable[[], float] = time.time,
        stats: Stats | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self._limits = {
            ("day", "tokens"): tokens_per_day,
            ("day", "usd"): usd_per_day,
            ("month", "tokens"): tokens_per_month,
            ("month", "usd"): usd_per_month,
        }
        for (period, unit), limit in self._limits.items():
            if limit is not None and limit < 0:
                name = f"{unit}_per_{period}"
                raise RequestError(f"{name} must be non-negative or None, got {limit!r}", field=name)
        if not 0 < alert_fraction <= 1:
            raise RequestError(f"alert_fraction must be in (0, 1], got {alert_fraction!r}", field="alert_fraction")
        self.alert_fraction = alert_fraction
        self._pricing = pricing or Pricing()
        self._timer = timer
        self._stats = stats
        self._ledger = ledger
        self._lock = threading.Lock()
        self._spent = {key: 0.0 for key in self._limits}
        self._alerted = {key: False for key in self._limits}
        self._stopped = {key: False for key in self._limits}
        self._starts = {period: _period_start(period, timer()) for period in _PERIODS}

    def __repr__(self) -> str:
        limits = ", ".join(f"{unit}_per_{period}={limit!r}" for (period, unit), limit in self._limits.items() if limit is not None)
        return f"BudgetGuard({limits})"

    def _roll(self) -> None:
        """Start a new period (spending back to zero) when the clock has passed into one."""
        now = self._timer()
        for period in _PERIODS:
            start = _period_start(period, now)
            if start != self._starts[period]:
                self._starts[period] = start
                for key in self._limits:
                    if key[0] == period:
                        self._spent[key], self._alerted[key], self._stopped[key] = 0.0, False, False

    def _ledger_key(self, key: tuple[str, str]) -> str:
        period, unit = key
        return f"budget:{unit}_per_{period}:{self._starts[period].date().isoformat()}"

    def _refresh(self) -> None:
        """Read the ledger's totals of the limited budgets (other processes spend too)."""
        if self._ledger is not None:
            for key, limit in self._limits.items():
                if limit is not None:
                    self._spent[key] = self._ledger.total(self._ledger_key(key)) / _SCALE[key[1]]

    def _exhausted(self) -> list[tuple[str, str]]:
        return [key for key, limit in self._limits.items() if limit is not None and self._spent[key] >= limit]

    def check(self, *, tenant: str = "", model: str = "") -> None:
        """Raise ``BudgetExceeded`` (naming the budget) if any budget of the current period is spent."""
        with self._lock:
            self._roll()
            self._refresh()
            exhausted = self._exhausted()
        if exhausted:
            if self._stats is not None:
                self._stats.incr("budget_stops", tenant=tenant, model=model)
            period, unit = exhausted[0]
            limit = self._limits[exhausted[0]]
            raise BudgetExceeded(f"budget {unit}_per_{period}={limit} is spent for this {period} (UTC); calls resume next {period}", code="budget_exceeded")

    def record(self, model: str | None, prompt_tokens: int, completion_tokens: int, *, tenant: str = "") -> None:
        """Add one call's usage (tokens, and dollars from the pricing table) to every budget."""
        usd = self._pricing.cost(model, prompt_tokens, completion_tokens)
        alerts = []
        with self._lock:
            self._roll()
            for key, limit in self._limits.items():
                amount = (prompt_tokens + completion_tokens) if key[1] == "tokens" else usd
                if self._ledger is not None and limit is not None:
                    scale = _SCALE[key[1]]
                    self._spent[key] = self._ledger.add_total(self._ledger_key(key), round(amount * scale)) / scale
                else:
                    self._spent[key] += amount
                if limit is not None and not self._alerted[key] and self._spent[key] >= limit * self.alert_fraction:
                    self._alerted[key] = True
                    alerts.append((key, limit, self._spent[key]))
        for (period, unit), limit, spent in alerts:
            log.warning("semcache budget %s_per_%s: %.4g of %.4g spent (alert at %d%%)", unit, period, spent, limit, round(self.alert_fraction * 100))
            if self._stats is not None:
                self._stats.incr("budget_alerts", tenant=tenant, model=model or "")

    def state(self) -> dict:
        """Return each budget's spent, limit, fraction, alerted, exhausted and period start (ISO, UTC)."""
        with self._lock:
            self._roll()
            self._refresh()
            out = {}
            for (period, unit), limit in self._limits.items():
                spent = self._spent[(period, unit)]
                out[f"{unit}_per_{period}"] = {
                    "spent": round(spent, 6) if unit == "usd" else int(spent),
                    "limit": limit,
                    "fraction": (spent / limit if limit else (1.0 if limit == 0 else 0.0)) if limit is not None else None,
                    "alerted": self._alerted[(period, unit)],
                    "exhausted": limit is not None and spent >= limit,
                    "period_start": self._starts[period].isoformat(),
                }
            return out
