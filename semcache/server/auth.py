"""Sidecar keys ("virtual keys"): who may call the sidecar, as which tenant, within which limits.

A sidecar key is a secret the sidecar hands out instead of the provider key it spends. It is
kept only as its SHA-256: the keys file holds hashes (``key_sha256``), or plaintext keys
(``key``) that are hashed as the file is read and never kept. The file is TOML or JSON; the
environment variable named by ``settings.client_keys_env`` may hold the same JSON document:

    [[keys]]
    key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    tenant = "team-a"
    rpm = 60                  # optional: this tenant's own requests per minute upstream
    tpm = 20000               # optional: tokens per minute upstream
    budget_usd_per_day = 5    # optional: also budget_tokens_per_day, _per_month variants

Keys of one tenant share its limits and budget (give them on one key, or the same on each).
With keys configured, a request without a known key gets 401 ``invalid_api_key``; the tenant is
the key's tenant name; the upstream always gets the sidecar's own key (a caller's key is a
sidecar key, never a provider key, so it is never forwarded). A tenant's limits and budget
count what it sends *upstream* (misses); hits are free. They stand in front of the shared
limiter and budget of ``settings``, which still pace the provider key as a whole. A budget
reserves each call's estimate before it is sent and settles it after (``BudgetGuard.reserve``),
so concurrent calls cannot all pass and overshoot it.

``check_exposure`` refuses the one dangerous setup: the sidecar's own provider key served on a
non-loopback address to anyone who asks (no keys), unless ``settings.open`` says so.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import Settings
from ..errors import AuthenticationFailed, ConfigError, RateLimited, StoreError
from ..upstream.budget import BudgetGuard
from ..upstream.limiter import RateLimiter, Reservation
from ..upstream.tokens import estimate_request_tokens

__all__ = ["ClientKey", "ClientKeys", "TenantQuota", "check_exposure", "hash_key", "is_loopback", "load_client_keys"]

log = logging.getLogger("semcache")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_LIMITS = ("rpm", "tpm", "budget_tokens_per_day", "budget_usd_per_day", "budget_tokens_per_month", "budget_usd_per_month")


def hash_key(key: str) -> str:
    """Return the hex SHA-256 of a key (what the keys file holds): ``printf %s "$KEY" | sha256sum``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ClientKey:
    """One sidecar key: its hash (never the key), its tenant, and the tenant's optional limits."""

    key_sha256: str = field(repr=False)
    tenant: str
    rpm: int | None = None
    tpm: int | None = None
    budget_tokens_per_day: int | None = None
    budget_usd_per_day: float | None = None
    budget_tokens_per_month: int | None = None
    budget_usd_per_month: float | None = None

    def limits(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _LIMITS if getattr(self, name) is not None}


def _entry(raw: Any, where: str) -> ClientKey:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table with 'key_sha256' (or 'key') and 'tenant'")
    known = {f.name for f in fields(ClientKey)} | {"key"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {unknown}; expected some of {sorted(known)}")
    if ("key" in raw) == ("key_sha256" in raw):
        raise ConfigError(f"{where} needs exactly one of 'key_sha256' (the key's SHA-256, hex) and 'key' (hashed at load)")
    if "key" in raw:
        if not isinstance(raw["key"], str) or len(raw["key"]) < 8:
            raise ConfigError(f"{where}: 'key' must be a string of at least 8 characters")
        digest = hash_key(raw["key"])
    else:
        digest = raw["key_sha256"].lower() if isinstance(raw["key_sha256"], str) else ""
        if not _HEX64.fullmatch(digest):
            raise ConfigError(f"{where}: 'key_sha256' must be 64 hex digits (printf %s \"$KEY\" | sha256sum)")
    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise ConfigError(f"{where}: 'tenant' must be 1-64 characters of letters, digits and ._@- (starting with a letter "
                          f"or digit), got {tenant!r}")
    limits = {}
    for name in _LIMITS:
        value = raw.get(name)
        if value is None:
            continue
        integer = name in ("rpm", "tpm") or name.startswith("budget_tokens")
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if not ok or isinstance(value, bool) or not value == value or value < (1 if name in ("rpm", "tpm") else 0) \
                or value == float("inf"):
            kind = "a positive integer" if name in ("rpm", "tpm") else "an integer >= 0" if integer else "a number >= 0"
            raise ConfigError(f"{where} (tenant {tenant!r}): {name!r} must be {kind}, got {value!r}")
        limits[name] = float(value) if not integer else value
    return ClientKey(digest, tenant, **limits)


def _document(data: Any, source: str) -> list[ClientKey]:
    items = data.get("keys") if isinstance(data, Mapping) else data
    if isinstance(data, Mapping) and set(data) - {"keys"}:
        raise ConfigError(f"{source}: unknown top-level field(s) {sorted(set(data) - {'keys'})}; expected 'keys'")
    if not isinstance(items, list):
        raise ConfigError(f"{source} must hold a list of keys: {{\"keys\": [{{\"key_sha256\": ..., \"tenant\": ...}}]}}")
    return [_entry(raw, f"{source}: keys[{i}]") for i, raw in enumerate(items)]


def _read_file(path: str) -> list[ClientKey]:
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"client keys file {path!r} cannot be read: {exc.strerror or exc}") from exc
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            from ..toml import tomllib

            data = tomllib.loads(text)
    except ValueError:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        # The parser's message may quote the line: it can hold a plaintext key, so it is not repeated.
        raise ConfigError(f"client keys file {path!r} is not valid {'JSON' if path.endswith('.json') else 'TOML'}") from None
    return _document(data, f"client keys file {path!r}")


class ClientKeys:
    """The sidecar keys, by hash; ``authenticate(presented)`` returns the caller's ``ClientKey``."""

    def __init__(self, keys: Sequence[ClientKey]) -> None:
        if not keys:
            raise ConfigError("client keys: the list is empty; remove the setting to run without client keys")
        self._by_hash: dict[str, ClientKey] = {}
        tenants: dict[str, dict[str, Any]] = {}
        for key in keys:
            if key.key_sha256 in self._by_hash:
                raise ConfigError(f"client keys: a key of tenant {key.tenant!r} is listed twice")
            self._by_hash[key.key_sha256] = key
            merged = tenants.setdefault(key.tenant, {})
            for name, value in key.limits().items():
                if merged.setdefault(name, value) != value:
                    raise ConfigError(f"client keys: tenant {key.tenant!r} has two values for {name!r} ({merged[name]!r} "
                                      f"and {value!r}); its keys share one limit")
        # Every key of a tenant carries the tenant's limits, wherever they were written.
        self._by_hash = {h: ClientKey(h, k.tenant, **tenants[k.tenant]) for h, k in self._by_hash.items()}
        self.tenants: dict[str, dict[str, Any]] = tenants

    def __len__(self) -> int:
        return len(self._by_hash)

    def __repr__(self) -> str:
        return f"ClientKeys({len(self)} keys, tenants={sorted(self.tenants)!r})"

    def authenticate(self, presented: str | None) -> ClientKey:
        """Return the key's entry; raise ``AuthenticationFailed`` (401) for a missing or unknown key."""
        if not presented:
            raise AuthenticationFailed("this sidecar needs a sidecar key: send 'Authorization: Bearer <key>'",
                                       status_code=401, code="invalid_api_key")
        key = self._by_hash.get(hash_key(presented))
        if key is None:
            raise AuthenticationFailed("incorrect sidecar key provided", status_code=401, code="invalid_api_key")
        return key


def load_client_keys(settings: Settings, environ: Mapping[str, str]) -> ClientKeys | None:
    """Return the keys of ``settings.client_keys_file`` and of the variable ``settings.client_keys_env``; None if neither is set."""
    keys: list[ClientKey] = []
    if settings.client_keys_file:
        keys += _read_file(settings.client_keys_file)
    text = environ.get(settings.client_keys_env) if settings.client_keys_env else None
    if text:
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"environment variable {settings.client_keys_env} is not valid JSON") from None
        keys += _document(data, f"environment variable {settings.client_keys_env}")
    if not settings.client_keys_file and not text:
        return None
    return ClientKeys(keys)


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything


def check_exposure(settings: Settings, *, own_key: str | None, client_keys: ClientKeys | None, fixed_upstream: bool) -> None:
    """Raise ``ConfigError`` for a setup that would let anyone spend the sidecar's own provider key."""
    if client_keys is not None and not own_key and not fixed_upstream:
        raise ConfigError(f"client keys are configured but the sidecar has no upstream key of its own: set the "
                          f"environment variable {settings.upstream_api_key_env} (callers' sidecar keys are never sent upstream)")
    if own_key and client_keys is None and not settings.open and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host!r} with the sidecar's own upstream key ({settings.upstream_api_key_env}) "
            "and no client keys: anyone who can reach it could spend that key. Configure client keys (client_keys_file "
            f"or {settings.client_keys_env}), listen on 127.0.0.1, or set open = true (--open) to allow it")


class _TenantLedger:
    """A budget ledger under the tenant's own names: ``BudgetGuard``'s totals are per guard, not per tenant."""

    def __init__(self, ledger: Any, tenant: str) -> None:
        self._ledger, self._prefix = ledger, f"tenant:{tenant}:"

    def add_total(self, key: str, amount: int) -> int:
        return self._ledger.add_total(self._prefix + key, amount)

    def reserve_total(self, key: str, amount: int, limit: int) -> int | None:
        return self._ledger.reserve_total(self._prefix + key, amount, limit)

    def total(self, key: str) -> int:
        return self._ledger.total(self._prefix + key)


class _Ticket:
    """What ``admit`` took for one call: a limiter reservation and a budget reservation (either may be None)."""

    __slots__ = ("reservation", "held")

    def __init__(self, reservation: Reservation | None, held: Any) -> None:
        self.reservation, self.held = reservation, held


class TenantQuota:
    """One tenant's own limits in front of the shared upstream: ``RateLimiter`` and ``BudgetGuard``, both optional.

    ``admit`` before an upstream call reserves the call's estimated cost (prompt tokens counted
    in a worker thread, plus ``max_tokens`` or 256, as the upstream client estimates) from the
    budget and the limiter, or raises ``BudgetExceeded`` / ``RateLimited`` at once, taking
    nothing (no waiting: a client over its own limit is told to back off, as OpenAI does);
    ``settle`` replaces the estimate by the real usage; ``refund`` gives a failed call's tokens
    back (its request still counts, as it does upstream).
    """

    def __init__(self, tenant: str, limits: Mapping[str, Any], *, alert_fraction: float = 0.8, pricing: Any = None,
                 stats: Any = None, ledger: Any = None, limiter: Any = None) -> None:
        self.tenant = tenant
        self.rpm, self.tpm = limits.get("rpm"), limits.get("tpm")
        # ``limiter``: one shared by every replica (a RedisRateLimiter for these limits); else a local one.
        self.limiter = limiter if limiter is not None else RateLimiter(self.rpm, self.tpm) if self.rpm or self.tpm else None
        budgets = [limits.get(name) for name in _LIMITS[2:]]
        self.budget = None
        if any(b is not None for b in budgets):
            self.budget = BudgetGuard(*budgets, alert_fraction=alert_fraction, pricing=pricing, stats=stats,
                                      ledger=_TenantLedger(ledger, tenant) if ledger is not None else None)

    def __repr__(self) -> str:
        return f"TenantQuota({self.tenant!r}, limiter={self.limiter!r}, budget={self.budget!r})"

    async def admit(self, body: Mapping[str, Any], kind: str) -> _Ticket:
        """Reserve one call of ``body`` from the tenant's budget and limiter, all or nothing."""
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        prompt = completion = 0
        if self.tpm is not None or self.budget is not None:  # counting a long prompt is CPU work: not on a loop
            prompt, completion = await asyncio.to_thread(functools.partial(estimate_request_tokens, dict(body), kind=kind))
        held = None
        if self.budget is not None:  # the ledger is the cache directory's store: disk I/O, in a thread
            held = await asyncio.to_thread(self.budget.reserve, model, prompt, completion, tenant=self.tenant)
        try:
            reservation = None
            if self.limiter is not None:
                reservation = await self.limiter.aacquire(prompt + completion if self.tpm else 0, max_wait=0.0)
        except RateLimited as exc:
            self._release(held)
            if exc.code == "limiter_unavailable":  # the shared limiter cannot be reached: not this tenant's limit
                raise
            limits = ", ".join(f"{v} {n}" for n, v in (("requests/min", self.rpm), ("tokens/min", self.tpm)) if v)
            raise RateLimited(f"rate limit of tenant {self.tenant!r} reached ({limits}); retry in {exc.retry_after:.1f}s",
                              retry_after=exc.retry_after, code="rate_limit_exceeded") from None
        except BaseException:
            self._release(held)
            raise
        return _Ticket(reservation, held)

    async def settle(self, ticket: _Ticket | None, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace the call's estimate by its real usage, in the limiter and the budget."""
        if ticket is None:
            return
        if ticket.reservation is not None and self.limiter is not None:
            self.limiter.adjust(ticket.reservation, prompt_tokens + completion_tokens)
        if ticket.held is not None and self.budget is not None:
            try:
                await asyncio.to_thread(self.budget.settle, ticket.held, (prompt_tokens, completion_tokens), model=model)
            except StoreError as exc:  # the answer is already here: the estimate stays spent
                log.warning("semcache tenant %s: the budget could not be settled (%s); the estimate stays spent", self.tenant,
                            type(exc).__name__)

    def refund(self, ticket: _Ticket | None) -> None:
        """A call that failed spent no tokens: give them back (inline: it runs on cancellation too)."""
        if ticket is None:
            return
        if ticket.reservation is not None and self.limiter is not None:
            self.limiter.adjust(ticket.reservation, 0)
        self._release(ticket.held)

    def _release(self, held: Any) -> None:
        if held is not None and self.budget is not None:
            try:
                self.budget.release(held)
            except StoreError as exc:
                log.warning("semcache tenant %s: a budget reservation could not be given back (%s)", self.tenant,
                            type(exc).__name__)
