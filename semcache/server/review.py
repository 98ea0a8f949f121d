"""The review page, ``GET /semcache/ui``: what the cache saved and decided, and buttons to judge it.

One server-rendered HTML page, no build step: savings over time (an inline SVG of the samples
``History`` takes every minute), hit rates by kind, tenant and model, the budgets and limits, and
the recent near-threshold decisions (``decisions.Decisions``) with "right" / "wrong" buttons whose
small inline script POSTs to ``/semcache/feedback``. The totals are ``cache.stats()``, the very
numbers ``GET /semcache/stats`` shows the admin.

Access is the admin's (``settings.admin_token_env``). A browser signs in once with a form that
POSTs the token (so it never sits in a URL, a log or the history) and gets an HttpOnly,
SameSite=Strict session cookie scoped to ``/semcache`` (``admin.session_cookie``); programs keep
using ``Authorization: Bearer``. The page sends a strict Content-Security-Policy (its one script
and style carry a per-response nonce) and is never cached.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import __version__
from . import admin
from .decisions import Decided
from .metrics import tenant_label

__all__ = ["History", "routes"]

MAX_LOGIN_BYTES = 4096
HISTORY_INTERVAL_S = 60.0
HISTORY_POINTS = 24 * 60  # a day of minutes
_KINDS = (("exact_hits", "exact"), ("semantic_hits", "semantic"), ("stale_serves", "stale"), ("misses", "miss"),
          ("bypasses", "bypass"))


class History:
    """Samples of the cache's totals, one per ``interval`` seconds (the newest ``size``), taken by a daemon thread."""

    def __init__(self, totals: Callable[[], dict], *, interval: float = HISTORY_INTERVAL_S, size: int = HISTORY_POINTS,
                 timer: Callable[[], float] = time.time) -> None:
        self.totals, self.interval, self.size, self._timer = totals, interval, size, timer
        self._points: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now (best effort: a store that cannot be read leaves a gap)."""
        try:
            total = self.totals()
        except Exception:  # the store is down: no point this minute
            return
        with self._lock:
            self._points = (self._points + [(self._timer(), total)])[-self.size:]

    def points(self) -> list[tuple[float, dict]]:
        with self._lock:
            return list(self._points)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="semcache-history", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# -- formatting -------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _int(value: float) -> str:
    return f"{int(value):,}"


def _usd(value: float) -> str:
    return f"${value:,.6f}" if value < 1 else f"${value:,.2f}"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "–"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S")


def _card(key: str, label: str, shown: str) -> str:
    return f'<div class="card"><div class="label">{_e(label)}</div><div class="value" id="stat-{key}">{_e(shown)}</div></div>'


def _table(headers: list[str], rows: list[list[str]], *, table_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body or "<tr><td>none yet</td></tr>"}</tbody></table>'


def _breakdown(groups: dict, label: Callable[[str], str], table_id: str) -> str:
    rows = []
    for name, c in groups.items():
        hits = c.get("exact_hits", 0) + c.get("semantic_hits", 0)
        rows.append([_e(label(name)), _int(c.get("requests", 0)), _int(c.get("exact_hits", 0)), _int(c.get("semantic_hits", 0)),
                     _int(c.get("misses", 0)), _share(hits, c.get("requests", 0)),
                     _int(c.get("prompt_tokens_saved", 0) + c.get("completion_tokens_saved", 0)), _usd(c.get("cost_saved_usd", 0.0))])
    return _table(["", "requests", "exact", "semantic", "misses", "hit rate", "tokens saved", "saved"], rows, table_id=table_id)


def _chart(points: list[tuple[float, dict]]) -> str:
    """Requests per interval (hits over misses) as bars, dollars saved so far as a line: an inline SVG."""
    if len(points) < 2:
        return '<p class="note">The chart fills in as samples are taken (one a minute).</p>'
    width, height, pad = 900, 180, 30
    steps = []
    for (t0, a), (t1, b) in zip(points, points[1:]):
        hits = b.get("exact_hits", 0) + b.get("semantic_hits", 0) - a.get("exact_hits", 0) - a.get("semantic_hits", 0)
        steps.append((t1, max(hits, 0), max(b.get("requests", 0) - a.get("requests", 0) - hits, 0), b.get("cost_saved_usd", 0.0)))
    top = max(max(h + m for _, h, m, _ in steps), 1)
    most_saved = max(s for *_, s in steps) or 1.0
    bar = (width - 2 * pad) / len(steps)
    parts, line = [], []
    for i, (at, hits, misses, saved) in enumerate(steps):
        x = pad + i * bar
        h_hit, h_miss = (height - 2 * pad) * hits / top, (height - 2 * pad) * misses / top
        y = height - pad
        title = f"{_when(at)} UTC: {hits} hits, {misses} misses, {_usd(saved)} saved so far"
        parts.append(f'<g><title>{_e(title)}</title><rect class="hit" x="{x:.1f}" y="{y - h_hit:.1f}" width="{max(bar - 1, 1):.1f}" '
                     f'height="{h_hit:.1f}"/><rect class="miss" x="{x:.1f}" y="{y - h_hit - h_miss:.1f}" '
                     f'width="{max(bar - 1, 1):.1f}" height="{h_miss:.1f}"/></g>')
        line.append(f"{x + bar / 2:.1f},{y - (height - 2 * pad) * saved / most_saved:.1f}")
    axis = (f'<text x="{pad}" y="{pad - 10}">{top:,} requests per interval (green: hits, grey: misses); line: dollars saved, '
            f'up to {_e(_usd(most_saved))}</text><text x="{pad}" y="{height - 8}">{_when(steps[0][0])} UTC</text>'
            f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{_when(steps[-1][0])} UTC</text>')
    return (f'<svg id="savings-chart" viewBox="0 0 {width} {height}" role="img" aria-label="requests and savings over time">'
            f'{axis}{"".join(parts)}<polyline class="saved" points="{" ".join(line)}"/></svg>')


def _with_now(points: list[tuple[float, dict]], total: dict) -> list[tuple[float, dict]]:
    """The samples, and the totals now when they moved since the last one."""
    if points and points[-1][1].get("requests") == total.get("requests"):
        return points
    return points + [(time.time(), total)]


def _decision_row(d: Decided, stored: str | None) -> str:
    failed = [f"{name}: {detail}" if detail else name for name, passed, detail in d.checks if not passed]
    checks = ", ".join(_e(f) for f in failed) if failed else f"{len(d.checks)} passed"
    verdict = {None: "", True: "marked right", False: "marked wrong"}[d.verdict]
    stored_cell = _e(stored) if stored is not None else '<span class="note">(entry gone)</span>'
    return (f'<tr class="decision {d.served}" data-entry="{d.entry_id}" data-query="{_e(d.query)}">'
            f"<td>{_when(d.at)}</td><td>{_e(d.served)}</td><td class=\"query\">{_e(d.query)}</td><td>{stored_cell}</td>"
            f"<td>{d.score:.4f}</td><td>{d.similarity:.4f}</td><td>{d.threshold:g}</td><td>{checks}</td>"
            f"<td>{_e(d.tenant)} / {_e(d.model)}</td>"
            f'<td><button type="button" data-verdict="right">right</button> '
            f'<button type="button" data-verdict="wrong">wrong</button> <span class="verdict">{verdict}</span></td></tr>')


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 40px;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:1px solid #ddd}
h2{margin-top:28px;font-size:16px}.note{color:#777}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.card .label{color:#666;font-size:12px}.card .value{font-size:20px;font-weight:600}
table{border-collapse:collapse;margin-top:6px}th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
td.query{max-width:320px}tr.refused{color:#555}tr.semantic td:nth-child(2){color:#1a7f37;font-weight:600}
svg text{font-size:11px;fill:#555}rect.hit{fill:#2da44e}rect.miss{fill:#c8ccd0}polyline.saved{fill:none;stroke:#0969da;stroke-width:2}
button{cursor:pointer}.inline{display:inline}.verdict{color:#555;font-size:12px}
"""

_SCRIPT = """
for (const button of document.querySelectorAll("button[data-verdict]")) {
  button.addEventListener("click", async () => {
    const row = button.closest("tr"), out = row.querySelector(".verdict"), correct = button.dataset.verdict === "right";
    const body = {id: Number(row.dataset.entry), correct: correct, query: row.dataset.query};
    out.textContent = "sending...";
    try {
      const answer = await fetch("/semcache/feedback", {method: "POST", credentials: "same-origin",
        headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
      const data = await answer.json();
      out.textContent = !answer.ok ? "failed: " + (data.error ? data.error.message : answer.status)
        : !data.marked ? "entry gone" : correct ? "marked right" : "marked wrong";
    } catch (error) { out.textContent = "failed: " + error; }
  });
}
"""


def _page(title: str, body: str, *, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
                f'<meta name="viewport" content="width=device-width, initial-scale=1"><style nonce="{nonce}">{_STYLE}</style>'
                f'</head><body>{body}<script nonce="{nonce}">{_SCRIPT}</script></body></html>')
    response = HTMLResponse(document, status_code=status, headers={
        "content-security-policy": f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                                   "connect-src 'self'; form-action 'self'; img-src 'self' data:; base-uri 'none'; "
                                   "frame-ancestors 'none'",
        "cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "same-origin"})
    return response


def _login_form(message: str = "", status: int = 401) -> Response:
    body = ('<header><h1>semcache</h1></header><h2>Sign in to the review page</h2>'
            f'<p class="note">{_e(message) or "Enter the admin token (the value of the sidecar&#39;s admin token variable)."}</p>'
            '<form method="post" action="/semcache/ui/login"><input type="password" name="token" id="token" '
            'autocomplete="current-password" required autofocus> <button type="submit" id="sign-in">Sign in</button></form>')
    return _page("semcache: sign in", body, status=status)


async def page(request: Request) -> Response:
    refusal = admin._admin_refusal(request)
    if refusal is not None:
        if refusal.status_code == 403:
            return _login_form("The review page is off: the sidecar has no admin token configured.", status=403)
        return _login_form()
    sidecar = request.app.state.sidecar
    body = await asyncio.to_thread(render, sidecar)
    return _page("semcache review", body)


async def login(request: Request) -> Response:
    token = request.app.state.sidecar.admin_token
    if token is None:
        return _login_form("The review page is off: the sidecar has no admin token configured.", status=403)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_LOGIN_BYTES:
            return _login_form("That is not a token.", status=413)
    given = (parse_qs(raw.decode("utf-8", "replace")).get("token") or [""])[0]
    if not admin.token_matches(given, token):
        return _login_form("Wrong token.")
    response = RedirectResponse("/semcache/ui", status_code=303)
    value, max_age = admin.session_cookie(token)
    response.set_cookie(admin.SESSION_COOKIE, value, max_age=max_age, path="/semcache", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/semcache/ui", status_code=303)
    response.delete_cookie(admin.SESSION_COOKIE, path="/semcache")
    return response


def render(sidecar: Any) -> str:
    """Return the page's body (blocking: reads the store)."""
    cache = sidecar.cache
    snapshot = cache.stats()
    total = snapshot["total"]
    requests, hits = total["requests"], total["exact_hits"] + total["semantic_hits"]
    tokens_saved = total["prompt_tokens_saved"] + total["completion_tokens_saved"]
    policy = cache.policy
    header = (f'<header><h1>semcache review</h1><div class="note">version {_e(__version__)} · model '
              f'{_e(cache.embedder.model_id)} · store {"redis" if sidecar.settings.store else "disk"} · policy '
              f'{_e(policy.to_dict().get("kind", "cosine"))} at threshold {policy.threshold:g} · {_int(snapshot["cache"]["entries"])} entries · '
              f'<form class="inline" method="post" action="/semcache/ui/logout"><button id="sign-out">sign out</button>'
              f"</form></div></header>")
    cards = "".join((
        _card("requests", "requests", _int(requests)), _card("hit_rate", "hit rate", _share(hits, requests)),
        _card("exact_hits", "exact hits", _int(total["exact_hits"])), _card("semantic_hits", "semantic hits", _int(total["semantic_hits"])),
        _card("misses", "misses", _int(total["misses"])), _card("requests_saved", "requests saved", _int(total["requests_saved"])),
        _card("tokens_saved", "tokens saved", _int(tokens_saved)), _card("cost_saved_usd", "saved", _usd(total["cost_saved_usd"])),
        _card("cost_spent_usd", "spent upstream", _usd(total["cost_spent_usd"]))))
    kinds = _table(["result", "requests", "share"], [[name, _int(total[key]), _share(total[key], requests)] for key, name in _KINDS],
                   table_id="by-kind")
    limits = [["sidecar", f"{sidecar.settings.rpm or '–'} rpm, {sidecar.settings.tpm or '–'} tpm",
               f"{_int(total['rate_limited_429'])} upstream 429s, {_int(total['quota_exhausted'])} insufficient_quota, "
               f"{_int(total['ratelimit_waits'])} calls held back ({total['ratelimit_wait_s']:.1f} s)"]]
    limits += [[_e(name), f"{quota.rpm or '–'} rpm, {quota.tpm or '–'} tpm", ""] for name, quota in sorted(sidecar.quotas.items())]
    budget_rows = []
    for scope, guard in sidecar.budgets():
        try:
            state = guard.state()
        except Exception as exc:  # the ledger is the store
            budget_rows.append([_e(scope), "", "", "", _e(f"unavailable: {type(exc).__name__}")])
            continue
        for name, b in state.items():
            if b["limit"] is not None:
                flags = "spent: cache only" if b["exhausted"] else "alerted" if b["alerted"] else "ok"
                budget_rows.append([_e(scope), _e(name), f'{b["spent"]:,} of {b["limit"]:,}', f'{b["fraction"]:.2%}', flags])
    decided = sidecar.decisions.recent()
    stored = _stored_prompts(cache, [d.entry_id for d in decided if d.stored is None])
    rows = "".join(_decision_row(d, d.stored if d.stored is not None else stored.get(d.entry_id)) for d in decided)
    decisions = (f'<table id="decisions"><thead><tr><th>time (UTC)</th><th>decision</th><th>query</th><th>stored prompt</th>'
                 f"<th>score</th><th>cosine</th><th>threshold</th><th>checks failed</th><th>tenant / model</th><th>verdict</th>"
                 f'</tr></thead><tbody>{rows or "<tr><td colspan=10>none yet</td></tr>"}</tbody></table>')
    return "".join((
        header, '<h2>Totals (all replicas, since the store was created)</h2><div class="cards">', cards, "</div>",
        "<h2>Over time</h2>", _chart(_with_now(sidecar.history.points(), total)),
        "<h2>Hit rates by kind</h2>", kinds,
        "<h2>By tenant</h2>", _breakdown(snapshot.get("by_tenant", {}), tenant_label, "by-tenant"),
        "<h2>By model</h2>", _breakdown(snapshot.get("by_model", {}), str, "by-model"),
        "<h2>Budgets</h2>", _table(["scope", "budget", "spent", "used", "state"], budget_rows, table_id="budgets"),
        "<h2>Limits</h2>", _table(["scope", "limits", "upstream"], limits, table_id="limits"),
        f'<h2>Recent decisions near the threshold</h2><p class="note">Semantic and stale hits, and misses that scored within '
        f'{sidecar.decisions.band:g} of the threshold; newest first, the last {len(decided)} this process made. "wrong" stops '
        'that entry from answering that query again.</p>', decisions))


def _stored_prompts(cache: Any, entry_ids: list[int]) -> dict[int, str]:
    """The stored prompts of the entries a near miss was compared with (gone ones are left out)."""
    if not entry_ids:
        return {}
    try:
        get_many = getattr(cache.store, "get_many", None)
        found = get_many(set(entry_ids)) if get_many is not None else {i: cache.store.get(i) for i in set(entry_ids)}
    except Exception:  # the store is down: the page still shows the decisions
        return {}
    return {i: entry.query_text for i, entry in found.items() if entry is not None}


def routes() -> list[Route]:
    return [
        Route("/semcache/ui", page, methods=["GET"]),
        Route("/semcache/ui/login", login, methods=["POST"]),
        Route("/semcache/ui/logout", logout, methods=["POST"]),
    ]
