"""Alerts that reach a person: budget 80%, budget spent, quota exhausted, a run of upstream 429s.

The sidecar's ``Alerter`` listens to the engine's counters (``Stats.listen``): the budget guard
counts ``budget_alerts`` and ``budget_stops`` (with the budget in ``detail``), the upstream client
``quota_exhausted`` (an ``insufficient_quota`` answer) and ``rate_limited_429``. Each event is
raised once across every replica sharing the store: the first process whose ``add_total`` on the
event's ledger key returns 1 owns it (the same atomic step the budget's own alert uses). That
process logs a warning, counts ``semcache_alerts_total{event}`` and, with ``alert_webhook_url``
set, POSTs the alert in the webhook's shape (``alert_format``, see ``payload``).

When an event repeats: a budget's alert and stop once per budget and period (UTC day or month);
``insufficient_quota`` once per ``alert_repeat`` seconds; the 429 run once per window in which the
replicas together received ``alert_429_count`` 429s (fixed windows of ``alert_429_window`` seconds,
counted in the ledger, so three replicas seeing a third each still alert).

Nothing here runs on the request path: ``listen`` only puts the event on a bounded queue, and one
daemon thread does the ledger step and the POST, with a timeout. A webhook that is down, slow or
refuses costs a log line and ``semcache_alert_failures_total``, never a request. If the ledger
cannot be read, the alert is sent anyway: twice is better than never. The webhook URL is a
secret (Slack's carries its token): only its host is ever logged.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .metrics import tenant_label

__all__ = ["EVENTS", "FORMATS", "Alerter", "payload"]

log = logging.getLogger("semcache")

EVENTS = ("budget_alert", "budget_stop", "quota_exhausted", "rate_limited")
FORMATS = ("slack", "dingtalk", "wecom", "feishu")
QUEUE_SIZE = 1000  # events waiting for the sender; past it they are dropped (and logged): a flood is one alert anyway
POST_TIMEOUT_S = 5.0


def payload(fmt: str, text: str, fields: Mapping[str, Any]) -> dict:
    """Return the JSON body a webhook of kind ``fmt`` takes for an alert ``text`` with its ``fields``.

    slack: an incoming webhook's ``{"text": ...}``, the fields as an attachment's (Slack shows
    them) and as ``"semcache"`` (for programs: Slack ignores keys it does not know);
    dingtalk and wecom: ``{"msgtype": "text", "text": {"content": ...}}``;
    feishu (Lark): ``{"msg_type": "text", "content": {"text": ...}}``. Those three take no extra
    keys, so the fields are appended to the text, one per line.
    """
    if fmt == "slack":
        return {"text": text, "attachments": [{"fields": [{"title": k, "value": str(v), "short": True}
                                                          for k, v in fields.items()]}], "semcache": dict(fields)}
    lines = text + "\n" + "\n".join(f"{k}: {v}" for k, v in fields.items())
    if fmt in ("dingtalk", "wecom"):
        return {"msgtype": "text", "text": {"content": lines}}
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": lines}}
    raise ValueError(f"alert format must be one of {', '.join(FORMATS)}, got {fmt!r}")


class _MemoryLedger:
    """Without a store: the ledger of this process alone."""

    def __init__(self) -> None:
        self._totals: Counter = Counter()
        self._lock = threading.Lock()

    def add_total(self, key: str, amount: int) -> int:
        with self._lock:
            self._totals[key] += amount
            return self._totals[key]


class Alerter:
    """Raise the sidecar's alerts once across replicas; log, count and POST them off the request path.

    ``url`` None: alerts are logged and counted only. ``ledger``: the store every replica shares
    (its ``add_total``). ``count`` 429s within ``window`` seconds raise ``rate_limited``;
    ``repeat`` spaces ``quota_exhausted`` (and 429) alerts. ``timer`` is wall-clock time.
    ``raised`` and ``failed`` count alerts by event (``semcache_alerts_total``,
    ``semcache_alert_failures_total``).
    """

    def __init__(self, *, url: str | None = None, fmt: str = "slack", ledger: Any = None, count: int = 20,
                 window: float = 60.0, repeat: float = 3600.0, timeout: float = POST_TIMEOUT_S,
                 timer: Callable[[], float] = time.time) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"alert format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.url, self.fmt = url, fmt
        self.ledger = ledger if ledger is not None else _MemoryLedger()
        self._alone = _MemoryLedger()  # while the shared ledger cannot be used
        self.count, self.window, self.repeat, self.timeout = count, window, repeat, timeout
        self.raised: Counter = Counter()
        self.failed: Counter = Counter()
        self._timer = timer
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._host = socket.gethostname()

    def __repr__(self) -> str:
        where = urlsplit(self.url).hostname if self.url else None
        return f"Alerter(webhook={where!r}, format={self.fmt!r}, 429s={self.count}/{self.window:g}s)"

    @classmethod
    def from_settings(cls, settings: Any, *, ledger: Any = None) -> "Alerter":
        return cls(url=settings.alert_webhook_url, fmt=settings.alert_format, ledger=ledger, count=settings.alert_429_count,
                   window=settings.alert_429_window, repeat=settings.alert_repeat)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(alerts raised, alerts whose POST failed), by event."""
        return dict(self.raised), dict(self.failed)

    # -- on the counting thread: only queue -------------------------------------------------------
    def listen(self, counter: str, amount: float, tenant: str, model: str, detail: Mapping[str, Any] | None) -> None:
        """A ``Stats`` listener: queue the counts that may be alerts (cheap; never blocks, never raises)."""
        if counter not in ("budget_alerts", "budget_stops", "quota_exhausted", "rate_limited_429") or self._closed:
            return
        try:
            self._queue.put_nowait((counter, amount, tenant, model, dict(detail or {}), self._timer()))
        except queue.Full:
            log.warning("semcache alerts: the queue is full; an alert event (%s) is dropped", counter)
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(target=self._run, name="semcache-alerts", daemon=True)
                    self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (bounded by ``timeout``, default the POST timeout plus a second), then stop."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(self.timeout + 1 if timeout is None else timeout)

    # -- on the alert thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._handle(*item)
            except Exception as exc:  # an alert must never take the thread down with it
                log.warning("semcache alerts: could not handle %s: %s: %s", item[0], type(exc).__name__, exc)

    def _handle(self, counter: str, amount: float, tenant: str, model: str, detail: dict, now: float) -> None:
        who = {"tenant": tenant_label(tenant)} if tenant else {}
        if counter == "rate_limited_429":
            bucket = math.floor(now / self.window)
            total = self._add(f"alert-429:{self.window:g}:{bucket}", int(amount))
            if not total - amount < self.count <= total:
                return  # below the bar, or past it (already raised in this window)
            self._raise("rate_limited", f"rate_limited:{self.window:g}:{bucket}",
                        f"semcache: {self.count} or more upstream 429 (rate limit) answers within {self.window:g} s across "
                        "the replicas. The client waits and retries them; a sustained run means rpm/tpm are set above the "
                        "provider's limits, or another client spends the same key.",
                        {"event": "rate_limited", "threshold": f"{self.count} in {self.window:g} s", "model": model, **who})
        elif counter == "quota_exhausted":
            self._raise("quota_exhausted", f"quota_exhausted:{tenant}:{math.floor(now / self.repeat)}",
                        "semcache: the upstream answered insufficient_quota: the account's quota or credit is used up. "
                        "Misses fail (or get a stale answer) until it is raised; hits are still served.",
                        {"event": "quota_exhausted", "model": model, **who})
        else:
            budget, period_start = detail.get("budget", "?"), detail.get("period_start", "")
            limit = detail.get("limit")
            if counter == "budget_alerts":
                spent = detail.get("spent", 0.0)
                share = f"{spent / limit:.0%}" if limit else "all"
                self._raise("budget_alert", f"budget_alert:{tenant}:{budget}:{period_start}",
                            f"semcache: budget {budget} is {share} spent ({spent:.6g} of {limit:g}) this period. At 100% "
                            "upstream calls stop and the sidecar answers from its cache only.",
                            {"event": "budget_alert", "budget": budget, "spent": f"{spent:.6g}", "limit": f"{limit:g}",
                             "period_start": period_start, **who})
            else:
                self._raise("budget_stop", f"budget_stop:{tenant}:{budget}:{period_start}",
                            f"semcache: budget {budget} ({limit:g}) is spent: upstream calls are refused until the next "
                            "period and the sidecar answers from its cache only.",
                            {"event": "budget_stop", "budget": budget, "limit": f"{limit:g}", "period_start": period_start,
                             "model": model, **who})

    def _add(self, key: str, amount: int) -> int:
        try:
            return self.ledger.add_total(key, amount)
        except Exception as exc:  # the store is down: decide as if alone (twice is better than never)
            log.warning("semcache alerts: the ledger cannot be used (%s: %s); deciding without the other replicas",
                        type(exc).__name__, exc)
            return self._alone.add_total(key, amount)

    def _raise(self, event: str, key: str, text: str, fields: dict) -> None:
        if self._add("alert:" + key, 1) != 1:
            return  # another replica (or an earlier count here) raised it
        self.raised[event] += 1
        fields = {**{k: v for k, v in fields.items() if v not in ("", None)}, "host": self._host,
                  "time": datetime.fromtimestamp(self._timer(), tz=timezone.utc).isoformat(timespec="seconds")}
        log.warning("%s (%s)", text, ", ".join(f"{k}={v}" for k, v in fields.items()))
        if self.url:
            self._post(event, payload(self.fmt, text, fields))

    def _post(self, event: str, body: dict) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "semcache-alerts"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 (http/https only: config)
                answer.read(65536)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failed[event] += 1
            reason = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__
            log.warning("semcache alerts: the webhook at %s did not take the %s alert: %s", urlsplit(self.url).hostname,
                        event, reason)
