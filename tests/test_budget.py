import logging
from datetime import datetime, timezone

import pytest

from semcache.errors import BudgetExceeded, RequestError
from semcache.stats import Stats
from semcache.upstream.budget import BudgetGuard
from semcache.upstream.pricing import Price, Pricing


class WallClock:
    def __init__(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now


def test_hard_stop_once_the_daily_tokens_are_spent():
    stats = Stats()
    guard = BudgetGuard(tokens_per_day=1000, timer=WallClock("2025-03-10T12:00:00"), stats=stats)
    guard.check()
    guard.record("gpt-4o-mini", 600, 300)
    guard.check()
    guard.record("gpt-4o-mini", 50, 50)
    with pytest.raises(BudgetExceeded, match="tokens_per_day"):
        guard.check(tenant="t1")
    assert stats.snapshot()["by_tenant"]["t1"]["budget_stops"] == 1


def test_alert_is_logged_and_counted_once_per_period(caplog):
    stats = Stats()
    guard = BudgetGuard(usd_per_day=1.0, alert_fraction=0.5, pricing=Pricing({"m": Price(1_000_000, 0)}), timer=WallClock("2025-03-10T12:00:00"), stats=stats)
    with caplog.at_level(logging.WARNING, logger="semcache"):
        guard.record("m", 0, 0)
        guard.record("m", 1, 0)  # 1.0 USD at 1M USD per 1M tokens... crosses 0.5
        guard.record("m", 0, 0)
    assert stats.snapshot()["total"]["budget_alerts"] == 1
    assert len([r for r in caplog.records if "budget usd_per_day" in r.getMessage()]) == 1
    assert guard.state()["usd_per_day"]["alerted"] is True


def test_day_budget_resets_at_utc_midnight_but_month_budget_does_not():
    clock = WallClock("2025-03-31T23:59:00")
    guard = BudgetGuard(tokens_per_day=100, tokens_per_month=150, timer=clock)
    guard.record("m", 100, 0)
    with pytest.raises(BudgetExceeded):
        guard.check()
    clock.now += 120  # 2025-04-01: new day and new month
    guard.check()
    state = guard.state()
    assert state["tokens_per_day"]["spent"] == 0 and state["tokens_per_month"]["spent"] == 0
    assert state["tokens_per_month"]["period_start"] == "2025-04-01T00:00:00+00:00"
    guard.record("m", 90, 0)
    clock.now += 86400  # next day, same month
    guard.record("m", 70, 0)
    with pytest.raises(BudgetExceeded, match="tokens_per_month"):
        guard.check()


def test_state_reports_every_budget():
    guard = BudgetGuard(tokens_per_day=200, timer=WallClock("2025-01-01T00:00:00"))
    guard.record("m", 50, 50)
    day = guard.state()["tokens_per_day"]
    assert day == {"spent": 100, "limit": 200, "fraction": 0.5, "alerted": False, "exhausted": False, "period_start": "2025-01-01T00:00:00+00:00"}
    assert guard.state()["usd_per_month"]["limit"] is None


def test_bad_settings_name_the_field():
    with pytest.raises(RequestError, match="alert_fraction"):
        BudgetGuard(alert_fraction=1.5)
    with pytest.raises(RequestError, match="usd_per_day"):
        BudgetGuard(usd_per_day=-1)


def test_spending_in_a_ledger_survives_a_restart_and_is_shared_between_processes(tmp_path):
    from semcache.storage.disk import DiskStore

    clock = WallClock("2025-03-10T12:00:00")
    pricing = Pricing({"m": Price(1_000_000, 0)})  # a dollar a token: micro-dollars stay exact
    first = DiskStore(str(tmp_path / "cache"))
    guard = BudgetGuard(tokens_per_day=1000, usd_per_month=5.5, pricing=pricing, timer=clock, ledger=first)
    guard.record("m", 3, 0)
    guard.record("m", 600, 0)
    first.close()
    # A restarted process (or a sibling on the same directory) sees what was spent.
    second = DiskStore(str(tmp_path / "cache"))
    other = BudgetGuard(tokens_per_day=1000, usd_per_month=5.5, pricing=pricing, timer=clock, ledger=second)
    state = other.state()
    assert state["tokens_per_day"]["spent"] == 603 and state["usd_per_month"]["spent"] == pytest.approx(603.0)
    with pytest.raises(BudgetExceeded, match="usd_per_month"):
        other.check()
    clock.now = datetime(2025, 4, 1, 0, 0, 1, tzinfo=timezone.utc).timestamp()  # a new day and month: nothing spent yet
    other.check()
    assert other.state()["tokens_per_day"]["spent"] == 0
    other.record("m", 2, 0)
    assert BudgetGuard(tokens_per_day=1000, timer=clock, ledger=second).state()["tokens_per_day"]["spent"] == 2
    second.close()
