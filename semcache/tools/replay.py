"""Replay logged traffic through a temporary cache: what would semcache save? (``semcache bench``)

A workload is JSONL, one request a line: an OpenAI chat/completions/responses body, the same
wrapped as ``{"request": {...}, "response": {...}, "timestamp": 1700000000.0 | "2024-01-01T00:00:00Z"}``,
or a plain prompt (a line that is not JSON). Unusable lines are reported with their line
numbers and skipped. Lines replay in file order through a fresh cache (the cache's own
lookups and stats); a miss stores the logged response when the line has one, else the
upstream's answer. Tokens come from the response's ``usage``, else are counted with tiktoken.

Rate-limit relief compares the upstream calls with and without the cache: with timestamps
on every line, per calendar minute (peak RPM/TPM, minutes over the limits); always, the
fewest minutes those calls need at the given RPM/TPM.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ..engine import SemanticCache
from ..errors import ConfigError, RequestError
from ..keys import RequestKey, normalize
from ..matching.policy import Decision, MatchPolicy
from ..upstream.pricing import Pricing
from ..upstream.tokens import count_tokens, estimate_request_tokens, usage_of
from .data import progress
from .evaluate import PrecomputedEmbedder, embed_unique

__all__ = ["DEFAULT_MODEL", "Workload", "WorkloadLine", "bench_upstream", "format_summary", "parse_workload",
           "plot_timeline", "replay"]

# Sent upstream (and priced) for lines that name no model, e.g. plain prompts.
DEFAULT_MODEL = "gpt-4o-mini"
_TIMELINE_POINTS = 500  # enough for a plot, small enough for the JSON report
_SHOWN_SKIPPED = 10


@dataclass(frozen=True)
class WorkloadLine:
    """One usable line: the request as logged, its keys, and the logged response/timestamp if any."""

    line_no: int
    request: dict | str
    kind: str
    key: RequestKey
    response: Any = None
    timestamp: float | None = None


@dataclass(frozen=True)
class Workload:
    """The usable lines in file order, and the skipped ones as ``{"line", "error"}``."""

    lines: list[WorkloadLine]
    skipped: list[dict] = field(default_factory=list)


def _timestamp(value: Any) -> float:
    """Return epoch seconds from a number or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    raise RequestError(f"timestamp must be epoch seconds or an ISO 8601 string, got {value!r}", field="timestamp")


def _kind(request: dict | str) -> str:
    if isinstance(request, str) or "prompt" in request:
        return "completions"
    return "chat" if "messages" in request else "responses"


def _parse_line(raw: Any) -> tuple[dict | str, Any, float | None]:
    """Return (request, response, timestamp) of one line; raise RequestError when it is unusable."""
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            if text[:1] in "{[":  # broken JSON (a truncated log line) is not a prompt
                raise RequestError(f"not valid JSON ({exc.msg})", field="line") from exc
            return text, None, None
    if isinstance(raw, str):
        return raw, None, None
    if not isinstance(raw, Mapping):
        raise RequestError(f"expected a request object, a wrapper or a prompt, got JSON {type(raw).__name__}", field="line")
    response, timestamp = None, None
    if "request" in raw:
        request, response = raw["request"], raw.get("response")
        if raw.get("timestamp") is not None:
            timestamp = _timestamp(raw["timestamp"])
        if not isinstance(request, (Mapping, str)):
            raise RequestError(f"'request' must be a request object or a prompt, got {type(request).__name__}", field="request")
        if response is not None and not isinstance(response, (Mapping, str)):
            raise RequestError(f"'response' must be a response object or text, got {type(response).__name__}", field="response")
    else:
        request = raw
    if isinstance(request, Mapping) and not {"messages", "prompt", "input"} & set(request):
        raise RequestError("neither a request ('messages', 'prompt' or 'input') nor a wrapper ('request')", field="line")
    return (dict(request) if isinstance(request, Mapping) else request), response, timestamp


def _raw_lines(source: Any) -> Iterator[tuple[int, Any]]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"workload file {str(path)!r} does not exist")
        with path.open(encoding="utf-8") as f:
            yield from ((n, line) for n, line in enumerate(f, start=1) if line.strip())
    else:
        yield from ((n, item) for n, item in enumerate(source, start=1) if not (isinstance(item, str) and not item.strip()))


def parse_workload(lines_or_path: str | os.PathLike | Iterable[Any]) -> Workload:
    """Read a workload: a path, or an iterable of raw lines (str) or parsed lines (dict).

    Raises ``ConfigError`` for a missing file and ``RequestError`` when no line is usable.
    """
    lines, skipped = [], []
    for line_no, raw in _raw_lines(lines_or_path):
        try:
            request, response, timestamp = _parse_line(raw)
            kind = _kind(request)
            key = normalize(request, kind=kind)
        except RequestError as exc:
            skipped.append({"line": line_no, "error": str(exc)})
            continue
        lines.append(WorkloadLine(line_no, request, kind, key, response, timestamp))
    if not lines:
        where = lines_or_path if isinstance(lines_or_path, (str, os.PathLike)) else "the workload"
        first = f"; line {skipped[0]['line']}: {skipped[0]['error']}" if skipped else ""
        raise RequestError(f"{where} has no usable request line ({len(skipped)} malformed{first})", field="workload")
    return Workload(lines, skipped)


# -- one request --------------------------------------------------------------------------------


def _response_text(response: Any) -> str:
    if isinstance(response, str):
        return response
    choices = response.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], Mapping) else {}
    message = first.get("message") if isinstance(first.get("message"), Mapping) else {}
    text = message.get("content") or first.get("text") or response.get("output_text") or ""
    return text if isinstance(text, str) else json.dumps(text)


def _body(line: WorkloadLine, default_model: str) -> dict:
    """Return the request as it is sent upstream: a model always, never streamed."""
    body = {"prompt": line.request} if isinstance(line.request, str) else dict(line.request)
    body.setdefault("model", default_model)
    body.pop("stream", None)
    body.pop("stream_options", None)
    return body


def _answer(line: WorkloadLine, upstream: Any, default_model: str) -> tuple[Any, int, int, str]:
    """Return (response, prompt tokens, completion tokens, where the usage came from) for a miss."""

    body = _body(line, default_model)
    if line.response is not None:
        response, (prompt, completion), source = line.response, usage_of(line.response), "logged"
    elif upstream is not None:
        answer = upstream.call(body, kind=line.kind)
        response, prompt, completion, source = answer.body, answer.prompt_tokens, answer.completion_tokens, "upstream"
    else:
        raise ConfigError(f"line {line.line_no} has no logged response and no upstream was given to answer it")
    if not prompt and not completion:
        prompt, _ = estimate_request_tokens(body)
        completion, source = count_tokens(_response_text(response), body["model"]), "counted"
    return response, prompt, completion, source


def _pair(pairs: dict, line: WorkloadLine, matched: str, decision: Decision) -> None:
    """Record a scored (query, stored text) pair once, counting how often it recurs."""
    seen = pairs.get((line.key.query_text, matched))
    if seen is not None:
        seen["count"] += 1
        return
    pairs[(line.key.query_text, matched)] = {
        "line": line.line_no, "count": 1, "query": line.key.query_text, "matched": matched, "score": round(decision.score, 6),
        "similarity": round(decision.similarity, 6), "failed_checks": [c.name for c in decision.checks if not c.passed]}


# -- the replay ---------------------------------------------------------------------------------


def replay(lines_or_path: Any, *, embedder, policy: MatchPolicy, upstream: Any = None, rpm: int | None = None,
           tpm: int | None = None, near: int = 10, pricing: Pricing | None = None, default_model: str = DEFAULT_MODEL) -> dict:
    """Replay a workload through a fresh temporary cache and return the report (a JSON-able dict).

    ``lines_or_path``: a path, an iterable of lines, or a ``Workload``. ``upstream`` (an
    ``Upstream``) answers misses whose line logged no response; without one such a line
    raises ``ConfigError``. ``rpm``/``tpm`` are the limits the relief is measured against.
    ``near``: how many lowest-scoring semantic hits and highest-scoring misses to report.
    """
    workload = lines_or_path if isinstance(lines_or_path, Workload) else parse_workload(lines_or_path)
    lines, pricing = workload.lines, pricing or Pricing()
    vectors = embed_unique(embedder, [line.key.query_text for line in lines if line.key.semantic])
    upstream_calls, tokens, sources = [], [], {"logged": 0, "upstream": 0, "counted": 0}
    spent = {"prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0}
    near_hits, near_misses, unpriced = {}, {}, set()
    with tempfile.TemporaryDirectory(prefix="semcache-bench-") as directory:
        cache = SemanticCache(directory, embedder=PrecomputedEmbedder(embedder, vectors), policy=policy, pricing=pricing,
                              ttl=None, max_entries=None, max_bytes=None, embed_cache_size=0, flush_interval=3600)
        try:
            with progress(len(lines), "replaying") as bar:
                for line in lines:
                    hit, decision = cache.probe(line.request, kind=line.kind)
                    if hit is not None:
                        entry = hit.entry
                        upstream_calls.append(False)
                        tokens.append(entry.prompt_tokens + entry.completion_tokens)
                        if hit.decision is not None:
                            _pair(near_hits, line, entry.query_text, hit.decision)
                        bar.update(1)
                        continue
                    closest = cache.store.get(decision.entry_id) if decision is not None and decision.entry_id is not None else None
                    if closest is not None:
                        _pair(near_misses, line, closest.query_text, decision)
                    response, prompt, completion, source = _answer(line, upstream, default_model)
                    model = (response.get("model") if isinstance(response, Mapping) else None) or line.key.model or default_model
                    entry = cache.insert(line.request, response, kind=line.kind, usage=(prompt, completion), model=model, key=line.key)
                    if pricing.price(model) is None:
                        unpriced.add(model)
                    sources[source] += 1
                    spent["prompt_tokens"] += prompt
                    spent["completion_tokens"] += completion
                    spent["usd"] += pricing.cost(model, prompt, completion)
                    upstream_calls.append(True)
                    tokens.append(prompt + completion)
                    bar.update(1)
            cache.flush()
            totals = cache.stats()["total"]
        finally:
            cache.close()
    n = len(lines)
    saved = {"requests": int(totals["requests_saved"]), "prompt_tokens": int(totals["prompt_tokens_saved"]),
             "completion_tokens": int(totals["completion_tokens_saved"]), "usd": round(totals["cost_saved_usd"], 6)}
    saved["tokens"] = saved["prompt_tokens"] + saved["completion_tokens"]
    spent_tokens = spent["prompt_tokens"] + spent["completion_tokens"]
    exact, semantic = int(totals["exact_hits"]), int(totals["semantic_hits"])
    timestamps = [line.timestamp for line in lines]
    return {
        "requests": n,
        "skipped": workload.skipped,
        "hits": {"exact": exact, "semantic": semantic, "total": exact + semantic},
        "hit_rate": {"exact": _r(exact / n), "semantic": _r(semantic / n), "total": _r((exact + semantic) / n)},
        "misses": n - exact - semantic,
        "bypassed_semantic": sum(not line.key.semantic for line in lines),
        "saved": saved,
        "spent": {"requests": sum(upstream_calls), **spent, "tokens": spent_tokens, "usd": round(spent["usd"], 6)},
        "without_cache": {"requests": n, "tokens": spent_tokens + saved["tokens"], "usd": round(spent["usd"] + saved["usd"], 6)},
        "usage_source": sources,
        "unpriced_models": sorted(unpriced),
        "rate_limits": {**rate_limit_relief(upstream_calls, tokens, timestamps if None not in timestamps else None, rpm, tpm),
                        "timestamped_requests": n - timestamps.count(None)},
        "near_threshold": {"hits": sorted(near_hits.values(), key=lambda p: p["score"])[:near],
                           "misses": sorted(near_misses.values(), key=lambda p: -p["score"])[:near]},
        "timeline": _timeline(upstream_calls),
        "policy": policy.to_dict(),
        "embedder": embedder.model_id,
    }


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def _min_minutes(calls: int, tokens: int, rpm: int | None, tpm: int | None) -> float | None:
    """Return the fewest minutes ``calls`` need under the limits (None when there is no limit)."""
    bounds = [calls / rpm] if rpm else []
    bounds += [tokens / tpm] if tpm else []
    return _r(max(bounds), 2) if bounds else None


def rate_limit_relief(upstream_calls: list[bool], tokens: list[int], timestamps: list[float] | None,
                      rpm: int | None, tpm: int | None) -> dict:
    """Compare upstream load with and without the cache; per calendar minute when timestamps are given."""
    out: dict[str, Any] = {"rpm": rpm, "tpm": tpm, "timed": timestamps is not None}
    for name, picked in (("without_cache", [True] * len(tokens)), ("with_cache", upstream_calls)):
        calls = sum(picked)
        spent = sum(t for t, p in zip(tokens, picked) if p)
        side = {"upstream_calls": calls, "upstream_tokens": spent, "min_minutes": _min_minutes(calls, spent, rpm, tpm)}
        if timestamps is not None:
            per_minute: dict[int, list[int]] = {}
            for ts, t, p in zip(timestamps, tokens, picked):
                if p:
                    bucket = per_minute.setdefault(int(ts // 60), [0, 0])
                    bucket[0] += 1
                    bucket[1] += t
            counts = list(per_minute.values()) or [[0, 0]]
            side["peak_rpm"] = max(c for c, _ in counts)
            side["peak_tpm"] = max(t for _, t in counts)
            limited = rpm is not None or tpm is not None
            side["minutes_over_limit"] = sum((rpm is not None and c > rpm) or (tpm is not None and t > tpm)
                                             for c, t in counts) if limited else None
            side["requests_over_rpm"] = sum(max(0, c - rpm) for c, _ in counts) if rpm else None
        out[name] = side
    if timestamps is not None:
        out["span_minutes"] = _r((max(timestamps) - min(timestamps)) / 60, 2)
    return out


def _timeline(upstream_calls: list[bool]) -> dict:
    """Cumulative upstream calls with the cache at up to ~500 evenly spaced requests (for plots)."""
    n = len(upstream_calls)
    step = max(1, math.ceil(n / _TIMELINE_POINTS))
    cumulative = np.cumsum(upstream_calls)
    at = sorted(set(range(step - 1, n, step)) | {n - 1})
    return {"request": [i + 1 for i in at], "with_cache": [int(cumulative[i]) for i in at]}


# -- the command's helpers ----------------------------------------------------------------------


@contextlib.contextmanager
def bench_upstream(kind: str, settings: Any = None, environ: Mapping[str, str] | None = None) -> Iterator[Any]:
    """Yield the upstream that answers misses: the bundled mock on loopback, or the real one.

    ``real`` builds the configured paced client (``settings.upstream_base_url``, the key from
    the variable named by ``upstream_api_key_env``): every miss spends real quota.
    """
    from ..upstream.client import Endpoint, OpenAIUpstream
    from ..wiring import api_key_from, budget_from_settings, build_upstream

    if kind == "real":
        client = build_upstream(settings, api_key_from(settings, environ or {}), budget=budget_from_settings(settings))
        with client:
            yield client
        return
    if kind != "mock":
        raise ConfigError(f"upstream must be 'mock' or 'real', got {kind!r}")
    try:
        from ..testing.mock import create_app
        from ..testing.serving import running_server
    except ImportError as exc:
        raise ConfigError("--upstream mock needs uvicorn and starlette: pip install 'semcache-llm[server]'") from exc

    with running_server(create_app()) as url, OpenAIUpstream(Endpoint(url + "/v1", "sk-semcache-bench", name="mock")) as client:
        yield client


def format_summary(report: dict) -> str:
    """Return the report as a short readable text."""
    hits, rate, saved, without = report["hits"], report["hit_rate"], report["saved"], report["without_cache"]
    limits = report["rate_limits"]
    skipped = len(report["skipped"])
    out = [f"semcache bench: {report['requests']:,} requests replayed ({skipped} line{'s' * (skipped != 1)} skipped)",
           f"  hit rate         {rate['total']:.1%}  ({hits['exact']:,} exact {rate['exact']:.1%}, "
           f"{hits['semantic']:,} semantic {rate['semantic']:.1%})",
           f"  requests saved   {saved['requests']:,} of {without['requests']:,}",
           f"  tokens saved     {saved['tokens']:,} of {without['tokens']:,}  "
           f"({saved['prompt_tokens']:,} prompt + {saved['completion_tokens']:,} completion)",
           f"  dollars saved    ${saved['usd']:.4f} of ${without['usd']:.4f}"
           + (f"  (unpriced: {', '.join(report['unpriced_models'])})" if report["unpriced_models"] else "")]
    no, yes = limits["without_cache"], limits["with_cache"]
    out.append(f"  upstream calls   {no['upstream_calls']:,} without the cache -> {yes['upstream_calls']:,} with it")
    if no["min_minutes"] is not None:
        at = " and ".join(f"{limits[name]:,} {name.upper()}" for name in ("rpm", "tpm") if limits[name])
        out.append(f"  at {at}: at least {no['min_minutes']} min of traffic without the cache -> {yes['min_minutes']} min with it")
    if limits["timed"]:
        out.append(f"  peak per minute  {no['peak_rpm']:,} req / {no['peak_tpm']:,} tok without -> "
                   f"{yes['peak_rpm']:,} req / {yes['peak_tpm']:,} tok with the cache (over {limits['span_minutes']} min)")
        if no["minutes_over_limit"] is not None:
            out.append(f"  minutes over the limit {no['minutes_over_limit']} without -> {yes['minutes_over_limit']} with the cache")
    elif limits["timestamped_requests"]:
        out.append(f"  per-minute load not computed: {limits['timestamped_requests']:,} of {report['requests']:,} "
                   "requests have a timestamp (every line needs one)")
    for title, pairs in (("lowest-scoring hits", report["near_threshold"]["hits"]),
                         ("highest-scoring misses", report["near_threshold"]["misses"])):
        if pairs:
            out.append(f"  {title} (check by eye):")
            out += [_pair_line(p) for p in pairs]
    for skipped in report["skipped"][:_SHOWN_SKIPPED]:
        out.append(f"  skipped line {skipped['line']}: {skipped['error']}")
    if len(report["skipped"]) > _SHOWN_SKIPPED:
        out.append(f"  ... and {len(report['skipped']) - _SHOWN_SKIPPED} more skipped lines (see --json)")
    return "\n".join(out)


def _pair_line(pair: dict) -> str:
    times = f" (x{pair['count']})" if pair["count"] > 1 else ""
    failed = f"  failed: {','.join(pair['failed_checks'])}" if pair["failed_checks"] else ""
    return (f"    line {pair['line']}{times}: score {pair['score']:.3f} cos {pair['similarity']:.3f}  "
            f"{pair['query']!r} ~ {pair['matched']!r}{failed}")


def plot_timeline(report: dict, path: str | os.PathLike) -> None:
    """Write a PNG of cumulative upstream calls with vs without the cache (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'semcache-llm[bench]'") from exc
    timeline = report["timeline"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(timeline["request"], timeline["request"], label="without cache", color="tab:gray", linestyle="--")
    ax.plot(timeline["request"], timeline["with_cache"], label="with semcache", color="tab:blue")
    ax.set_xlabel("requests replayed")
    ax.set_ylabel("upstream calls (cumulative)")
    ax.set_title(f"hit rate {report['hit_rate']['total']:.1%} over {report['requests']:,} requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
