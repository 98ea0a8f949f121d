import logging
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from semcache.errors import BudgetExceeded, RequestError, StoreError, UpstreamError
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


# -- reserve before a call, settle after it ----------------------------------------------------

PRICED = Pricing({"m": Price(1_000_000, 2_000_000)})  # a dollar a prompt token, two a completion token: exact in micro-dollars


def test_reserve_takes_the_estimate_and_settle_replaces_it_by_the_real_usage():
    guard = BudgetGuard(tokens_per_day=1000, usd_per_day=100.0, pricing=PRICED, timer=WallClock("2025-03-10T12:00:00"))
    held = guard.reserve("m", 10, 20)  # up to 30 tokens, 10 + 40 = 50 dollars
    assert guard.state()["tokens_per_day"]["spent"] == 30 and guard.state()["usd_per_day"]["spent"] == 50
    guard.settle(held, (10, 5))  # the answer used 5 of its 20: a refund
    assert guard.state()["tokens_per_day"]["spent"] == 15 and guard.state()["usd_per_day"]["spent"] == 20
    guard.settle(held, (999, 999))  # settling twice does nothing
    assert guard.state()["tokens_per_day"]["spent"] == 15
    more = guard.reserve("m", 10, 20)
    guard.settle(more, (40, 0))  # the prompt was counted low: charged more than reserved
    assert guard.state()["tokens_per_day"]["spent"] == 55


def test_a_call_whose_estimate_does_not_fit_is_refused_and_takes_nothing_from_any_budget():
    stats = Stats()
    guard = BudgetGuard(tokens_per_day=1000, usd_per_day=30.0, pricing=PRICED, timer=WallClock("2025-03-10T12:00:00"), stats=stats)
    with pytest.raises(RequestError, match=r"50 usd, more than the whole budget usd_per_day=30.0") as never:
        guard.reserve("m", 10, 20, tenant="t1")  # the tokens fit, the dollars never can (#18: a 400, not a 429)
    assert never.value.field == "max_tokens"
    assert guard.state()["tokens_per_day"]["spent"] == 0  # all or nothing
    first = guard.reserve("m", 0, 5)  # 10 dollars
    with pytest.raises(BudgetExceeded, match=r"usd_per_day=30.0 cannot cover this call.*30 usd and 20 are left"):
        guard.reserve("m", 10, 10, tenant="t1")  # the tokens fit, the dollars left do not
    assert guard.state()["tokens_per_day"]["spent"] == 5  # all or nothing
    assert stats.snapshot()["by_tenant"]["t1"]["budget_stops"] == 1
    guard.release(first)
    guard.settle(guard.reserve("m", 10, 10), None)  # 30 dollars: fits exactly; usage unknown keeps it
    assert guard.state()["usd_per_day"] == {**guard.state()["usd_per_day"], "spent": 30.0, "exhausted": True}
    with pytest.raises(BudgetExceeded, match="usd_per_day=30.0 is spent"):
        guard.reserve("unpriced-model", 1, 1)  # costs nothing, still refused once spent


def test_release_gives_a_failed_call_its_whole_reservation_back():
    guard = BudgetGuard(tokens_per_day=100, timer=WallClock("2025-03-10T12:00:00"))
    held = guard.reserve("m", 40, 60)
    with pytest.raises(BudgetExceeded):
        guard.reserve("m", 1, 0)
    guard.release(held)
    assert guard.state()["tokens_per_day"]["spent"] == 0
    guard.reserve("m", 40, 60)


reservation_ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 300), st.integers(0, 300)),
        # settle or release an open reservation: a usage at most its estimate, or unknown
        st.tuples(st.just("settle"), st.integers(0, 50), st.floats(0, 1), st.floats(0, 1)),
        st.tuples(st.just("unknown"), st.integers(0, 50)),
        st.tuples(st.just("release"), st.integers(0, 50)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(reservation_ops, st.integers(0, 2000))
def test_reserved_and_settled_spending_never_passes_the_budget(ops, limit):
    """For usages within their estimates: spent-or-reserved <= budget always, and == what the calls used."""
    guard = BudgetGuard(tokens_per_day=limit, timer=WallClock("2025-03-10T12:00:00"))
    open_calls, used = [], 0
    for op in ops:
        if op[0] == "reserve":
            try:
                open_calls.append((guard.reserve("m", op[1], op[2]), op[1] + op[2]))
            except BudgetExceeded:
                pass
            except RequestError:  # larger than the whole budget: refused as a bad request, taking nothing
                assert op[1] + op[2] > limit
        elif open_calls:
            held, estimate = open_calls.pop(op[1] % len(open_calls))
            if op[0] == "settle":
                usage = (int(estimate * op[2] * op[3]), int(estimate * op[2] * (1 - op[3])))
                guard.settle(held, usage)
                used += sum(usage)
            elif op[0] == "unknown":
                guard.settle(held, None)
                used += estimate  # an unknown usage keeps the upper bound
            else:
                guard.release(held)
        spent = guard.state()["tokens_per_day"]["spent"]
        assert spent == used + sum(estimate for _, estimate in open_calls)
        assert spent <= limit


@pytest.mark.parametrize("shared", [False, True])
def test_concurrent_reservations_never_overshoot(tmp_path, shared):
    """32 threads race for a budget that holds 5 calls: 5 win, the ledger never goes past it."""
    from concurrent.futures import ThreadPoolExecutor

    from semcache.storage.disk import DiskStore

    store = DiskStore(str(tmp_path / "cache")) if shared else None
    guard = BudgetGuard(tokens_per_day=5 * 30 + 10, timer=WallClock("2025-03-10T12:00:00"), ledger=store)

    def one(_):
        try:
            return guard.reserve("m", 10, 20)
        except BudgetExceeded:
            return None

    with ThreadPoolExecutor(32) as pool:
        held = [h for h in pool.map(one, range(32)) if h is not None]
    assert len(held) == 5 and guard.state()["tokens_per_day"]["spent"] == 150
    for h in held:
        guard.settle(h, (10, 3))
    assert guard.state()["tokens_per_day"]["spent"] == 5 * 13
    if store is not None:
        store.close()


def test_the_alert_fires_once_across_processes_sharing_a_ledger(tmp_path, caplog):
    from semcache.storage.disk import DiskStore

    clock = WallClock("2025-03-10T12:00:00")
    stores = [DiskStore(str(tmp_path / "cache")) for _ in range(2)]  # two processes on one directory
    stats = [Stats(), Stats()]
    guards = [BudgetGuard(tokens_per_day=100, alert_fraction=0.5, timer=clock, ledger=s, stats=counts) for s, counts in zip(stores, stats)]
    with caplog.at_level(logging.WARNING, logger="semcache"):
        guards[0].record("m", 60, 0)  # crosses 50%: the one alert
        guards[1].record("m", 10, 0)  # the other process sees 70% too: no second alert
        assert [s.snapshot()["total"].get("budget_alerts", 0) for s in stats] == [1, 0]
        guards[0].settle(guards[0].reserve("m", 1, 0), (1, 0))
        guards[1].settle(guards[1].reserve("m", 1, 0), (1, 0))
    assert [s.snapshot()["total"].get("budget_alerts", 0) for s in stats] == [1, 0]
    assert len([r for r in caplog.records if "budget tokens_per_day" in r.getMessage()]) == 1
    assert all(g.state()["tokens_per_day"]["alerted"] for g in guards)
    clock.now += 86400  # the next day alerts again, once
    with caplog.at_level(logging.WARNING, logger="semcache"):
        guards[1].record("m", 60, 0)
        guards[0].record("m", 1, 0)
    assert [s.snapshot()["total"].get("budget_alerts", 0) for s in stats] == [1, 1]
    for s in stores:
        s.close()


class BrokenLedger:
    """A ledger whose store fails: ``reads`` and ``writes`` say which operations raise ``StoreError``."""

    def __init__(self, *, reads: bool = True, writes: bool = True) -> None:
        self.reads, self.writes, self.totals = reads, writes, {}

    def add_total(self, key, amount):
        if self.writes:
            raise StoreError("disk I/O error")
        self.totals[key] = self.totals.get(key, 0) + amount
        return self.totals[key]

    def reserve_total(self, key, amount, limit):
        if self.writes or self.reads:
            raise StoreError("disk I/O error")
        if self.totals.get(key, 0) + amount > limit:
            return None
        return self.add_total(key, amount)

    def total(self, key):
        if self.reads:
            raise StoreError("disk I/O error")
        return self.totals.get(key, 0)


def test_a_ledger_that_cannot_be_read_refuses_calls_as_unavailable_not_as_spent():
    guard = BudgetGuard(tokens_per_day=100, timer=WallClock("2025-03-10T12:00:00"), ledger=BrokenLedger())
    for attempt in (lambda: guard.reserve("m", 1, 1), guard.check):
        with pytest.raises(UpstreamError) as info:
            attempt()
        assert not isinstance(info.value, BudgetExceeded)
        assert info.value.code == "budget_ledger_unavailable" and isinstance(info.value.__cause__, StoreError)


def test_settle_lets_a_ledger_failure_through_for_the_caller_to_log():
    ledger = BrokenLedger(reads=False, writes=False)
    guard = BudgetGuard(tokens_per_day=100, timer=WallClock("2025-03-10T12:00:00"), ledger=ledger)
    held = guard.reserve("m", 1, 1)
    ledger.writes = True
    with pytest.raises(StoreError):
        guard.settle(held, (0, 0))
