"""Stop spending when a daily or monthly token or dollar budget is used up.

A call reserves before it is sent and settles after it answered:

- ``reserve(model, prompt_tokens, completion_tokens)`` atomically takes the call's *estimated*
  cost (tokens: the prompt estimate plus ``max_tokens`` or the client's default; dollars: the
  same tokens priced, rounded up) from every limited budget, or raises ``BudgetExceeded`` and
  takes nothing. The check and the taking are one step (``Ledger.reserve_total``), so N
  concurrent calls can never all pass a check and overshoot by the N calls in flight.
- ``settle(reservation, usage)`` adds the difference between the real usage and the
  reservation (a refund when lower); ``release(reservation)`` gives a failed call's whole
  reservation back. A usage that is not known (``None``) leaves the reservation spent: it is
  the upper bound.

Spending counts once its reservation is taken: ``state()`` reports spent-or-reserved. A call
whose estimate does not fit what is left is refused even before the budget is quite spent,
which is what keeps the total under the budget (up to usages above their estimate: a prompt
counted low, or an answer longer than the guessed default when no ``max_tokens`` was stated).

On first crossing ``alert_fraction`` of a budget in a period one warning is logged and
``budget_alerts`` counted, once across every process sharing the ledger. Periods are UTC
calendar days and months, on the injected clock (``timer``, Unix seconds). Spending is kept in
a ``Ledger`` (``semcache.storage.protocols``) when one is given (the cache directory's store:
it survives restarts and is shared by every process on the directory), else in memory with the
same atomic semantics, where a restart starts from zero.

A ledger that cannot be read or written before a call fails closed: ``reserve`` and ``check``
raise ``UpstreamError`` with ``code="budget_ledger_unavailable"`` (nothing is sent, and the
refusal is not a ``BudgetExceeded``: the budget may well have room). ``settle``, ``release`` and
``record`` let the ``StoreError`` through; the client logs and counts it instead of failing an
answer the provider already gave.

``check()`` and ``record(...)`` are the older two-step form (check, call, add the usage); they
keep working but race under concurrency. Use ``reserve``/``settle``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import BudgetExceeded, RequestError, StoreError, UpstreamError
from ..stats import Stats
from .pricing import Pricing

if TYPE_CHECKING:
    from ..storage.protocols import Ledger

__all__ = ["BudgetGuard", "BudgetReservation"]

log = logging.getLogger("semcache")

_PERIODS = ("day", "month")
_SCALE = {"tokens": 1, "usd": 1_000_000}  # the ledger adds integers: dollars are kept in micro-dollars

BudgetKey = tuple[str, str]  # (period, unit)


def _period_start(period: str, now: float) -> datetime:
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _name(key: BudgetKey) -> str:
    period, unit = key
    return f"{unit}_per_{period}"


class _MemoryLedger:
    """The ledger of one process (no store given): ``Ledger``'s atomic semantics under a lock.

    Totals are keyed by period, so old periods' few keys (two per budget a day) stay behind;
    they are small enough not to prune.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}

    def add_total(self, key: str, amount: int) -> int:
        with self._lock:
            total = self._totals[key] = self._totals.get(key, 0) + int(amount)
            return total

    def reserve_total(self, key: str, amount: int, limit: int) -> int | None:
        with self._lock:
            total = self._totals.get(key, 0) + int(amount)
            if total > limit:
                return None
            self._totals[key] = total
            return total

    def total(self, key: str) -> int:
        with self._lock:
            return self._totals.get(key, 0)


class BudgetReservation:
    """What one call holds of every limited budget until it is settled or released."""

    __slots__ = ("model", "tenant", "held")

    def __init__(self, model: str | None, tenant: str, held: list[tuple[BudgetKey, str, int]]) -> None:
        self.model = model
        self.tenant = tenant
        self.held = held  # (budget, ledger key, amount in ledger units); emptied once settled

    def __repr__(self) -> str:
        return f"BudgetReservation(model={self.model!r}, held={[(_name(k), amount) for k, _, amount in self.held]!r})"


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
        self._limits: dict[BudgetKey, float | None] = {
            ("day", "tokens"): tokens_per_day,
            ("day", "usd"): usd_per_day,
            ("month", "tokens"): tokens_per_month,
            ("month", "usd"): usd_per_month,
        }
        for key, limit in self._limits.items():
            if limit is not None and limit < 0:
                raise RequestError(f"{_name(key)} must be non-negative or None, got {limit!r}", field=_name(key))
        if not 0 < alert_fraction <= 1:
            raise RequestError(f"alert_fraction must be in (0, 1], got {alert_fraction!r}", field="alert_fraction")
        self.alert_fraction = alert_fraction
        self._pricing = pricing or Pricing()
        self._timer = timer
        self._stats = stats
        self._ledger: Ledger = ledger if ledger is not None else _MemoryLedger()
        self._lock = threading.Lock()
        self._alert_seen: set[str] = set()  # alert keys this process has already tried to take

    def __repr__(self) -> str:
        limits = ", ".join(f"{_name(key)}={limit!r}" for key, limit in self._limits.items() if limit is not None)
        return f"BudgetGuard({limits})"

    # -- pure bookkeeping ------------------------------------------------------------------
    def _limited(self) -> Iterator[tuple[BudgetKey, float]]:
        return ((key, limit) for key, limit in self._limits.items() if limit is not None)

    def _ledger_key(self, key: BudgetKey, now: float) -> str:
        return f"budget:{_name(key)}:{_period_start(key[0], now).date().isoformat()}"

    def _alert_key(self, key: BudgetKey, ledger_key: str) -> str:
        return f"budget-alert:{_name(key)}:{ledger_key.rsplit(':', 1)[1]}"

    def _cost(self, key: BudgetKey, model: str | None, prompt_tokens: int, completion_tokens: int, *, upper: bool) -> int:
        """A call's cost in ledger units: tokens, or micro-dollars (rounded up for a reservation)."""
        if key[1] == "tokens":
            return prompt_tokens + completion_tokens
        micro = self._pricing.cost(model, prompt_tokens, completion_tokens) * _SCALE["usd"]
        return math.ceil(micro) if upper else round(micro)

    @staticmethod
    def _units(key: BudgetKey, limit: float) -> int:
        return round(limit * _SCALE[key[1]])

    def _unavailable(self, exc: StoreError) -> UpstreamError:
        return UpstreamError(f"the budget ledger cannot be used, so no call is sent (fail closed): {exc}", code="budget_ledger_unavailable")

    def _stop(self, key: BudgetKey, *, tenant: str, model: str | None, left: int = 0, amount: int = 0) -> BudgetExceeded:
        """The refusal: the budget is spent, or what is ``left`` of it cannot cover a call's estimated ``amount``."""
        period, unit = key
        if self._stats is not None:  # the detail names the budget for the sidecar's alert (server/alerts.py)
            self._stats.incr("budget_stops", tenant=tenant, model=model or "", detail=self._detail(key))
        if left <= 0:
            message = f"budget {_name(key)}={self._limits[key]} is spent for this {period} (UTC); calls resume next {period}"
        else:
            scale = _SCALE[unit]
            message = (f"budget {_name(key)}={self._limits[key]} cannot cover this call this {period} (UTC): it may cost "
                       f"{amount / scale:.6g} {unit} and {left / scale:.6g} are left; lower max_tokens, or calls resume next {period}")
        return BudgetExceeded(message, code="budget_exceeded")

    def _never(self, key: BudgetKey, amount: int) -> RequestError:
        """The refusal of a call larger than the whole budget: a bad request (400), never a retryable 429."""
        period, unit = key
        return RequestError(f"this call may cost {amount / _SCALE[unit]:.6g} {unit}, more than the whole budget "
                            f"{_name(key)}={self._limits[key]} of a {period}: it can never be admitted; lower max_tokens "
                            "(or shorten the prompt)", field="max_tokens")

    def _detail(self, key: BudgetKey) -> dict:
        """What a budget event was about: the budget, its limit, the alert fraction and the period it is in."""
        return {"budget": _name(key), "limit": self._limits[key], "fraction": self.alert_fraction,
                "period_start": _period_start(key[0], self._timer()).isoformat()}

    def _after_spending(self, key: BudgetKey, ledger_key: str, total: int, *, tenant: str, model: str | None) -> None:
        """Alert once per budget and period, across every process sharing the ledger."""
        limit = self._limits[key]
        if limit is None or total < self._units(key, limit) * self.alert_fraction:
            return
        alert_key = self._alert_key(key, ledger_key)
        with self._lock:
            if alert_key in self._alert_seen:
                return
            self._alert_seen.add(alert_key)
        # add_total is atomic: exactly one caller, of every process on the ledger, gets 1 back.
        # (Any Ledger has add_total; a tenant's view of the store has no reserve_total.)
        if self._ledger.add_total(alert_key, 1) != 1:
            return
        log.warning("semcache budget %s: %.4g of %.4g spent (alert at %d%%)", _name(key), total / _SCALE[key[1]], limit,
                    round(self.alert_fraction * 100))
        if self._stats is not None:
            self._stats.incr("budget_alerts", tenant=tenant, model=model or "", detail={**self._detail(key), "spent": total / _SCALE[key[1]]})

    # -- reserve before a call, settle after it ------------------------------------------------
    def reserve(self, model: str | None, prompt_tokens: int, completion_tokens: int, *, tenant: str = "") -> BudgetReservation:
        """Take a call's estimated cost from every limited budget, all or nothing.

        ``completion_tokens`` is the most the answer may use (``max_tokens``, or the client's
        default). Raises ``BudgetExceeded`` (naming the budget) when the estimate does not fit
        what is left of a budget, and ``UpstreamError(code="budget_ledger_unavailable")`` when
        the ledger cannot be read; either way nothing stays reserved.
        """
        now = self._timer()
        held: list[tuple[BudgetKey, str, int]] = []
        try:
            for key, limit in self._limited():
                ledger_key = self._ledger_key(key, now)
                amount = self._cost(key, model, prompt_tokens, completion_tokens, upper=True)
                if amount > self._units(key, limit):  # larger than the whole budget: no period can ever admit it
                    self._give_back(held)
                    raise self._never(key, amount)
                # A call estimated at nothing (an unpriced model) is still refused once the budget is spent.
                cap = self._units(key, limit) - (0 if amount else 1)
                if self._ledger.reserve_total(ledger_key, amount, cap) is None:
                    left = self._units(key, limit) - self._ledger.total(ledger_key)
                    self._give_back(held)
                    raise self._stop(key, tenant=tenant, model=model, left=left, amount=amount)
                held.append((key, ledger_key, amount))
        except StoreError as exc:
            try:
                self._give_back(held)
            except StoreError:
                log.warning("semcache budget: a reservation could not be given back after the ledger failed; it stays spent")
            raise self._unavailable(exc) from exc
        return BudgetReservation(model, tenant, held)

    def _give_back(self, held: list[tuple[BudgetKey, str, int]]) -> None:
        while held:
            _, ledger_key, amount = held[-1]
            if amount:
                self._ledger.add_total(ledger_key, -amount)
            held.pop()

    def settle(self, reservation: BudgetReservation, usage: tuple[int, int] | None, *, model: str | None = None) -> None:
        """Replace the reservation by the real ``usage`` (prompt, completion tokens); a refund when lower.

        ``model`` is the model that answered (a fallback's price differs), default the one
        reserved. ``usage`` None: unknown, the reservation stays spent. Settling twice does
        nothing. Raises ``StoreError`` when the ledger cannot be written.
        """
        model = model if model is not None else reservation.model
        while reservation.held:
            key, ledger_key, amount = reservation.held[0]
            delta = 0 if usage is None else self._cost(key, model, *usage, upper=False) - amount
            total = self._ledger.add_total(ledger_key, delta) if delta else self._ledger.total(ledger_key)
            reservation.held.pop(0)
            self._after_spending(key, ledger_key, total, tenant=reservation.tenant, model=model)

    def release(self, reservation: BudgetReservation) -> None:
        """Give a failed call's whole reservation back. Raises ``StoreError`` when the ledger cannot be written."""
        self._give_back(reservation.held)

    # -- the two-step form -------------------------------------------------------------------
    def check(self, *, tenant: str = "", model: str = "") -> None:
        """Raise ``BudgetExceeded`` (naming the budget) if any budget of the current period is spent.

        Raises ``UpstreamError(code="budget_ledger_unavailable")`` when the ledger cannot be read.
        """
        now = self._timer()
        try:
            exhausted = [key for key, limit in self._limited() if self._ledger.total(self._ledger_key(key, now)) >= self._units(key, limit)]
        except StoreError as exc:
            raise self._unavailable(exc) from exc
        if exhausted:
            raise self._stop(exhausted[0], tenant=tenant, model=model)

    def record(self, model: str | None, prompt_tokens: int, completion_tokens: int, *, tenant: str = "") -> None:
        """Add one call's usage (tokens, and dollars from the pricing table) to every limited budget.

        Raises ``StoreError`` when the ledger cannot be written.
        """
        now = self._timer()
        for key, _ in self._limited():
            ledger_key = self._ledger_key(key, now)
            total = self._ledger.add_total(ledger_key, self._cost(key, model, prompt_tokens, completion_tokens, upper=False))
            self._after_spending(key, ledger_key, total, tenant=tenant, model=model)

    def state(self) -> dict:
        """Return each budget's spent (reserved included), limit, fraction, alerted, exhausted and period start (ISO, UTC).

        A budget without a limit tracks nothing (its spending is in the stats' ``cost_spent_usd``
        and token counters). Raises ``StoreError`` when the ledger cannot be read.
        """
        now = self._timer()
        out = {}
        for key, limit in self._limits.items():
            period, unit = key
            ledger_key = self._ledger_key(key, now)
            units = self._ledger.total(ledger_key) if limit is not None else 0
            spent = units / _SCALE[unit]
            out[_name(key)] = {
                "spent": round(spent, 6) if unit == "usd" else int(spent),
                "limit": limit,
                "fraction": (spent / limit if limit else (1.0 if limit == 0 else 0.0)) if limit is not None else None,
                "alerted": limit is not None and self._ledger.total(self._alert_key(key, ledger_key)) > 0,
                "exhausted": limit is not None and units >= self._units(key, limit),
                "period_start": _period_start(period, now).isoformat(),
            }
        return out
