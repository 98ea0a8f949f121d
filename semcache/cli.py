"""The ``semcache`` command: serve | stats | eval | calibrate | tune | bench | demo | clear | doctor | mock-upstream.

Each command builds one ``Settings`` from its flags > environment (SEMCACHE_*) > ``--config``
file > defaults, then calls the library; the logic lives in the modules, not here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import Settings
from .errors import SemcacheError

__all__ = ["main"]


def _settings(config: str | None, **flags: Any) -> Settings:
    return Settings.load(flags=flags, environ=os.environ, config_file=config)


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


config_option = click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                             help="TOML or JSON settings file (flags and SEMCACHE_* override it).")
cache_dir_option = click.option("--cache-dir", default=None, help="Cache directory (default .semcache).")


class _Group(click.Group):
    """Print semcache's own errors as one clear line and exit 2, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SemcacheError as exc:
            click.echo(f"semcache: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(version=__version__, prog_name="semcache")  # the distribution is semcache-llm
def main() -> None:
    """semcache: a semantic cache for LLM APIs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from packages or local paths only
    # Loading the model says nothing of its own: no "Loading weights" bars or advisory warnings
    # from transformers / huggingface_hub (read when they are first imported, below in a command).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _quiet_model_loading() -> None:
    """Silence transformers' progress bars and warnings if it was imported before ``main`` set the environment."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()


@main.command()
@cache_dir_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats(cache_dir: str | None, config: str | None, as_json: bool) -> None:
    """Print what the cache did and saved (totals, per tenant, per model)."""
    from .stats import Stats, format_table
    from .storage.disk import DiskStore

    settings = _settings(config, cache_dir=cache_dir)
    if not os.path.isdir(settings.cache_dir):
        raise SemcacheError(f"no cache directory at {settings.cache_dir!r}")
    store = DiskStore(settings.cache_dir)  # no model load: stats are in the store
    try:
        snapshot = Stats(store).snapshot()
        snapshot["cache"] = {"directory": settings.cache_dir, "entries": len(store), "bytes_on_disk": store.volume(),
                             "built_with": store.meta()}
    finally:
        store.close()
    if as_json:
        _dump(snapshot)
        return
    click.echo(f"cache {settings.cache_dir}: {snapshot['cache']['entries']:,} entries, {snapshot['cache']['bytes_on_disk']:,} bytes")
    click.echo(format_table(snapshot, width=max(shutil.get_terminal_size((120, 24)).columns, 80)))


@main.command()
@cache_dir_option
@config_option
@click.option("--stats", "with_stats", is_flag=True, help="Reset the counters too.")
@click.confirmation_option(prompt="Delete every entry of the cache?")
def clear(cache_dir: str | None, config: str | None, with_stats: bool) -> None:
    """Delete every cached entry (and, with --stats, the counters)."""
    from .storage.disk import DiskStore
    from .tools.progress import working

    settings = _settings(config, cache_dir=cache_dir)
    if not os.path.isdir(settings.cache_dir):  # a mistyped path must not create an empty cache
        raise SemcacheError(f"no cache directory at {settings.cache_dir!r}")
    store = DiskStore(settings.cache_dir)
    try:
        n = len(store)
        with working(f"deleting {n:,} entries"):
            store.clear()
        if with_stats:
            store.reset_counters()
    finally:
        store.close()
    click.echo(f"deleted {n:,} entries from {settings.cache_dir}")


@main.group(name="eval")
def eval_group() -> None:
    """Measure the match policy: on labelled pairs, or on a replayed stream."""


def _policy_and_embedder(config, policy, threshold, model, adapter):
    from .tools.progress import working
    from .wiring import embedder_from_settings, policy_from_settings

    settings = _settings(config, policy=policy, threshold=threshold, model=model, adapter=adapter)
    _quiet_model_loading()
    with working("loading the embedding model"):
        return policy_from_settings(settings), embedder_from_settings(settings)


policy_option = click.option("--policy", default=None, type=click.Path(dir_okay=False), help="Policy file from `semcache calibrate`.")
threshold_option = click.option("--threshold", type=float, default=None, help="Override the policy's threshold.")
model_option = click.option("--model", default=None, help="Embedding model name or path (default: packaged all-MiniLM-L6-v2).")
adapter_option = click.option("--adapter", default=None,
                              help="Embedding adapter: 'default' (the cache directory's tuned one from `semcache tune`, else none), 'none', or a file from `semcache tune`.")


@eval_group.command(name="pairs")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--text-a", default="text_a", show_default=True)
@click.option("--text-b", default="text_b", show_default=True)
@click.option("--label", default="label", show_default=True, help="Label column (1 = same request); optional in the file.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write one JSON line per pair: score, hit, evidence.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of precision and recall against the threshold, the policy's threshold marked (needs labels).")
@policy_option
@threshold_option
@model_option
@adapter_option
@config_option
def eval_pairs_command(path, text_a, text_b, label, out, plot, policy, threshold, model, adapter, config) -> None:
    """Would text_b hit an entry stored for text_a? Print precision/recall/F1 as JSON."""
    from .tools.data import parse_label, read_rows
    from .tools.evaluate import eval_pairs, iter_jsonl, threshold_scores

    rows = read_rows(path, [text_a, text_b])
    if plot and not all(r.get(label) not in (None, "") for r in rows):
        raise SemcacheError(f"--plot needs a label on every pair (column {label!r}): precision and recall are measured against it")
    match_policy, embedder = _policy_and_embedder(config, policy, threshold, model, adapter)
    summary, decisions = eval_pairs(rows, embedder=embedder, policy=match_policy, text_a=text_a, text_b=text_b, label=label)
    if out:
        with open(out, "w") as f:
            f.writelines(iter_jsonl(decisions))
    if plot:
        import numpy as np

        from .tools.plots import plot_pairs

        labels = np.array([parse_label(r[label], f"{path}:{n}") for n, r in enumerate(rows, start=1)])
        plot_pairs(threshold_scores(decisions), labels, plot, chosen=match_policy.threshold,
                   title=f"semcache eval pairs: {Path(path).name}, threshold {match_policy.threshold:g}")
        click.echo(f"wrote {plot}", err=True)
    click.echo(json.dumps(summary))


@eval_group.command(name="stream")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--text", "text_col", default="text", show_default=True)
@click.option("--group", "group_col", default="group", show_default=True)
@click.option("--shuffle-seed", type=int, default=None, help="Replay in a seeded random order instead of file order.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Replay in N seeded orders (seeds 0..N-1) and print their mean and worst: one order is noisy.")
@click.option("--examples", type=click.IntRange(min=0), default=0, show_default=True,
              help="Include up to this many wrong hits per replay (query, the stored text that answered).")
@policy_option
@threshold_option
@model_option
@adapter_option
@config_option
def eval_stream_command(path, text_col, group_col, shuffle_seed, seeds, examples, policy, threshold, model, adapter, config) -> None:
    """Replay rows through a fresh cache; print hit rate and wrong-hit rate as JSON."""
    from .tools.data import read_rows
    from .tools.evaluate import eval_stream

    if seeds is not None and shuffle_seed is not None:
        raise SemcacheError("give --seeds N (seeds 0..N-1) or --shuffle-seed S, not both")
    rows = read_rows(path, [text_col, group_col])
    match_policy, embedder = _policy_and_embedder(config, policy, threshold, model, adapter)
    click.echo(json.dumps(eval_stream(rows, embedder=embedder, policy=match_policy, text=text_col, group=group_col,
                                      shuffle_seed=shuffle_seed, seeds=range(seeds) if seeds else None, examples=examples)))


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option("--upstream-base-url", default=None, help="The provider's base URL (default https://api.openai.com/v1).")
@click.option("--upstream-api-key-env", default=None, help="Environment variable holding the sidecar's own provider key.")
@cache_dir_option
@config_option
@policy_option
@threshold_option
@model_option
@adapter_option
@click.option("--rpm", type=int, default=None, help="Requests per minute to pace under.")
@click.option("--tpm", type=int, default=None, help="Tokens per minute to pace under.")
@click.option("--ttl", type=float, default=None, help="Seconds an entry stays fresh (0 = forever).")
@click.option("--admin-token-env", default=None, help="Environment variable holding the admin token.")
@click.option("--shared-cache/--no-shared-cache", default=None, help="One cache for every caller (default: one per API-key hash).")
@click.option("--pass-through-key/--no-pass-through-key", default=None, help="Forward the caller's API key upstream.")
@click.option("--allow-threshold-header/--no-allow-threshold-header", default=None, help="Honour x-semcache-threshold.")
@click.option("--max-body-bytes", type=int, default=None, help="Larger request bodies get 413.")
@click.option("--client-keys-file", default=None, type=click.Path(dir_okay=False),
              help="TOML or JSON file of sidecar keys (SHA-256 hashes) and their tenants; callers then need one.")
@click.option("--client-keys-env", default=None, help="Environment variable that may hold the same keys as JSON (default SEMCACHE_CLIENT_KEYS).")
@click.option("--open/--no-open", "open_", default=None,
              help="Serve the sidecar's own upstream key on a non-loopback address without client keys (refused otherwise).")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="A Host name served besides 127.0.0.1, localhost, [::1] and --host (repeatable; '*' = any).")
@click.option("--allowed-origin", "allowed_origins", multiple=True,
              help="A browser origin allowed to call, with CORS (repeatable; default none; '*' = any).")
@click.option("--store", default=None,
              help="Keep the cache in Redis, shared by every replica: redis://host:port/db (default: the local --cache-dir).")
@click.option("--store-prefix", default=None, help="Redis key prefix (default 'semcache'): several caches can share one Redis.")
@click.option("--redis-local-share", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="While Redis is out of reach, pace misses under this share of --rpm/--tpm (default: answer misses 429).")
@click.option("--snapshot-file", default=None,
              help="This replica's index snapshot (default <cache-dir>/index-snapshot.<prefix>.npz with --store; '' = none).")
@click.option("--snapshot-interval", type=click.FloatRange(min=0), default=None,
              help="Seconds between index snapshots (default 300; 0 = only at shutdown).")
@click.option("--recent-entries-bytes", type=click.IntRange(min=0), default=None,
              help="Bytes of recently stored/served entries kept in memory to answer hits while Redis is out of reach (default 64 MiB).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config, log_level, open_, **flags) -> None:
    """Run the OpenAI-compatible caching sidecar: point any client's base_url at it."""
    from .server import create_app, serve as run
    from .tools.progress import working

    flags["open"] = open_
    for name in ("allowed_hosts", "allowed_origins"):  # a repeatable flag not given is unset, not empty
        flags[name] = flags[name] or None
    settings = _settings(config, **flags)
    _quiet_model_loading()
    with working("loading the model and opening the store"):
        app = create_app(settings, environ=os.environ)
    run(settings, app=app, log_level=log_level, announce=lambda line: click.echo(line, err=True))


@main.command()
@click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False), help="Labelled pairs: .jsonl or .csv.")
@click.option("--target-precision", type=float, required=True, help="Precision the policy must reach, e.g. 0.95.")
@click.option("--out", type=click.Path(dir_okay=False), default="semcache-policy.json", show_default=True, help="Policy file to write.")
@click.option("--text-a", default="text_a", show_default=True)
@click.option("--text-b", default="text_b", show_default=True)
@click.option("--label", default="label", show_default=True)
@click.option("--holdout", type=float, default=0.2, show_default=True, help="Share of pairs held out (grouped by text) to report on.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of precision and recall against the threshold on the fit pairs, the chosen point marked.")
@policy_option
@model_option
@adapter_option
@config_option
def calibrate(pairs_path, target_precision, out, text_a, text_b, label, holdout, seed, plot, policy, model, adapter, config) -> None:
    """Fit the match policy's operating point to your labelled pairs; write a policy file.

    Refuses (exit 2, nothing written) when the pairs cannot support a point: no threshold reaches
    the target, or too few negatives reach the score for its precision to be measured.
    """
    from .tools.calibrate import calibrate as fit
    from .tools.data import read_pairs

    pairs = read_pairs(pairs_path, text_a, text_b, label)
    base, embedder = _policy_and_embedder(config, policy, None, model, adapter)
    try:
        fitted, report = fit(pairs, target_precision, embedder=embedder, holdout=holdout, seed=seed, base=base, plot=plot)
    finally:
        if plot and os.path.exists(plot):
            click.echo(f"wrote {plot}", err=True)
    fitted.save(out)
    report["policy_file"] = out
    click.echo(json.dumps(report, indent=2, default=float))
    held = report["held_out"]
    click.echo(f"wrote {out}: threshold {report['threshold']:.4f}; expect precision {held.get('precision')} (95% lower bound "
               f"{held.get('precision_lower_95')}) and recall {held.get('recall')} on data like the held-out part "
               f"({held['pairs']} pairs; use it with --policy {out})", err=True)
    if held.get("precision") is None:
        click.echo("warning: the threshold accepts none of the held-out pairs, so its precision there is not measured; "
                   "add pairs", err=True)
    elif held["precision"] < target_precision:
        click.echo(f"warning: on the held-out pairs precision is {held['precision']:.3f}, below the target {target_precision}: "
                   "the fit part's point does not carry over; add pairs or aim higher", err=True)


@main.command()
@click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False), help="Labelled pairs: .jsonl or .csv.")
@cache_dir_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the adapter here instead of recording it in the cache directory.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--rank", type=click.IntRange(min=1), default=8, show_default=True, help="Rank of the low-rank update.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate.")
@click.option("--holdout", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True,
              help="Share of pairs held out (grouped by text) to compare before and after.")
@click.option("--force", is_flag=True, help="Record the adapter even when it scores worse on the held-out pairs.")
@click.option("--text-a", default="text_a", show_default=True)
@click.option("--text-b", default="text_b", show_default=True)
@click.option("--label", default="label", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@model_option
@config_option
def tune(pairs_path, cache_dir, out, epochs, rank, lr, holdout, force, text_a, text_b, label, seed, model, config) -> None:
    """Fine-tune the embedder on your labelled pairs (CPU, minutes) and record it in the cache directory.

    Trains a small low-rank adapter on the fit part of the pairs, compares plain-cosine
    quality on the held-out part (grouped by text) with the embedder you use now, and
    records the adapter (cache directory's tuned-adapter.npz, used from then on) only when
    it is no worse. The directory must hold no entries: they were embedded by the old model.
    Run `semcache calibrate` afterwards to fit the policy's threshold to the new embedder.
    """
    from .embedding.adapter import TUNED_ADAPTER
    from .embedding.sentence import SentenceTransformerEmbedder
    from .storage.disk import DiskStore
    from .tools.data import read_pairs
    from .tools.progress import progress
    from .tools.tune import tune_on_pairs
    from .wiring import embedder_from_settings

    settings = _settings(config, cache_dir=cache_dir, model=model)
    pairs = read_pairs(pairs_path, text_a, text_b, label)
    target = Path(out) if out else Path(settings.cache_dir).expanduser() / TUNED_ADAPTER
    if not out and os.path.isdir(settings.cache_dir):
        store = DiskStore(settings.cache_dir)
        try:
            if len(store):
                raise SemcacheError(f"cache directory {settings.cache_dir!r} holds {len(store):,} entries embedded by the "
                                    "current model; clear it first (`semcache clear`) or write the adapter elsewhere with --out")
        finally:
            store.close()
    _quiet_model_loading()
    current = embedder_from_settings(settings)  # the embedder to beat
    base = SentenceTransformerEmbedder(settings.model, adapter=None, backend="torch")  # trained in place
    with progress(None, "tuning", unit="steps") as bar:
        def step(done: int, total: int, loss: float) -> None:
            bar.set_total(total)
            bar.set_description(f"tuning (loss {loss:.3f})")
            bar.update(1)

        result, report = tune_on_pairs(pairs, current=current, base=base, holdout=holdout, seed=seed, rank=rank, lr=lr,
                                       epochs=epochs, progress=step)
    before, after = report["held_out_before"], report["held_out_after"]
    better = after["best_f1"] >= before["best_f1"]
    if better or force or out:
        result.adapter.info["source"] = Path(pairs_path).name
        result.adapter.save(target)
        report["adapter"] = str(target)
    click.echo(json.dumps(report, indent=2))
    if "adapter" not in report:
        raise SemcacheError(f"the tuned embedder scores worse on the held-out pairs (best F1 {after['best_f1']} vs "
                            f"{before['best_f1']}); nothing recorded (--force records it anyway)")
    where = f"use it with --adapter {target}" if out else f"{settings.cache_dir} now embeds with it"
    click.echo(f"wrote {target}: held-out best F1 {before['best_f1']} -> {after['best_f1']}; {where}. "
               "Run `semcache calibrate` next to fit the threshold.", err=True)


@main.command(name="mock-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
@click.option("--rpm", type=int, default=None, help="Requests-per-minute limit (token bucket; 429 when over).")
@click.option("--tpm", type=int, default=None, help="Tokens-per-minute limit (prompt + max_tokens per request).")
@click.option("--latency-ms", type=float, default=0, show_default=True, help="Added to every API request.")
@click.option("--faults", default="", help="e.g. '429:30%,500:5%,quota:1%,slow:10%:3,drop:1%,garbage:1%'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
@click.option("--slow-s", type=float, default=2.0, show_default=True, help="Delay of a 'slow' fault.")
@click.option("--api-key-env", default=None, help="Environment variable holding the only key accepted (else any).")
def mock_upstream(host, port, rpm, tpm, latency_ms, faults, seed, slow_s, api_key_env) -> None:
    """Run the bundled OpenAI-compatible mock upstream (for demos, tests and benchmarks)."""
    from .testing.mock import serve

    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise SemcacheError(f"environment variable {api_key_env} is not set")
    click.echo(f"mock upstream on http://{host}:{port}/v1 (rpm={rpm}, tpm={tpm}, faults={faults!r})", err=True)
    serve(host, port, rpm=rpm, tpm=tpm, latency_ms=latency_ms, faults=faults, seed=seed, slow_s=slow_s, api_key=api_key)


@main.command()
@click.option("--workload", required=True, type=click.Path(dir_okay=False),
              help="JSONL: request bodies, {request, response, timestamp} wrappers, or plain prompt lines.")
@click.option("--upstream", "upstream_kind", type=click.Choice(["mock", "real"]), default="mock", show_default=True,
              help="Answers misses whose line logged no response. 'real' = the configured upstream: SPENDS REAL QUOTA.")
@click.option("--rpm", type=int, default=None, help="Requests-per-minute limit to measure the relief against.")
@click.option("--tpm", type=int, default=None, help="Tokens-per-minute limit to measure the relief against.")
@policy_option
@threshold_option
@model_option
@adapter_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a summary.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON report here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG of upstream calls with vs without the cache.")
@click.option("--near", type=click.IntRange(min=0), default=10, show_default=True,
              help="Show this many lowest-scoring hits and highest-scoring misses.")
def bench(workload, upstream_kind, rpm, tpm, policy, threshold, model, adapter, config, as_json, out, plot, near) -> None:
    """What would semcache save? Replay logged traffic through a temporary cache.

    Reports hit rate, requests/tokens/dollars saved, rate-limit relief at --rpm/--tpm and the
    near-threshold pairs to check by eye. The cache is temporary; nothing is kept.
    """
    from .tools.replay import bench_upstream, format_summary, parse_workload, plot_timeline, replay
    from .upstream.pricing import Pricing

    parsed = parse_workload(workload)  # refuse a bad file before loading the model
    settings = _settings(config, rpm=rpm, tpm=tpm)
    pricing = Pricing.from_file(settings.pricing) if settings.pricing else None
    with bench_upstream(upstream_kind, settings, os.environ) as client:  # a missing key fails before the model loads
        match_policy, embedder = _policy_and_embedder(config, policy, threshold, model, adapter)
        report = replay(parsed, embedder=embedder, policy=match_policy, upstream=client, rpm=settings.rpm,
                        tpm=settings.tpm, near=near, pricing=pricing)
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    if plot:
        plot_timeline(report, plot)
    click.echo(json.dumps(report) if as_json else format_summary(report))


@main.command()
@click.option("--via", type=click.Choice(["sidecar", "decorator"]), default="sidecar", show_default=True,
              help="How the workload reaches semcache: the openai SDK through the sidecar, or @semcache.cached.")
@click.option("--requests", type=click.IntRange(min=1), default=150, show_default=True, help="Requests to replay.")
@click.option("--rpm", type=click.IntRange(min=1), default=40, show_default=True, help="The mock upstream's requests-per-minute limit.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=150, show_default=True, help="The mock upstream's latency per answer.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--show", type=click.IntRange(min=0), default=25, show_default=True, help="Print this many requests one by one.")
def demo(via, requests, rpm, latency_ms, seed, show) -> None:
    """Replay a generated workload through semcache against the bundled mock upstream (what `make demo` runs).

    No API key, no network: the mock OpenAI upstream runs on loopback with a tight RPM limit.
    """
    from .tools.demo import main as run

    _quiet_model_loading()
    code = run(["--via", via, "--requests", str(requests), "--rpm", str(rpm), "--latency-ms", str(latency_ms),
                "--seed", str(seed), "--show", str(show)])
    if code:
        sys.exit(code)


@main.command()
@cache_dir_option
@config_option
@click.option("--repair", is_flag=True, help="Fix what is found (corrupt entries, dangling pointers, bad vectors).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a summary.")
def doctor(cache_dir: str | None, config: str | None, repair: bool, as_json: bool) -> None:
    """Check the cache directory for corrupt records and disagreement between entries, pointers and log."""
    from .storage.disk import DiskStore
    from .tools.doctor import diagnose, repair as fix
    from .tools.progress import working

    settings = _settings(config, cache_dir=cache_dir)
    if not os.path.isdir(settings.cache_dir):
        raise SemcacheError(f"no cache directory at {settings.cache_dir!r}")
    store = DiskStore(settings.cache_dir)  # no model load: everything needed is in the store
    try:
        with working(f"checking {settings.cache_dir}"):
            report = diagnose(store)
        out = report.as_dict()
        if repair and not report.healthy:
            out["repaired"] = fix(store, report)
            out["after"] = diagnose(store).as_dict()
    finally:
        store.close()
    if as_json:
        _dump(out)
    else:
        click.echo(f"{settings.cache_dir}: {out['entries']:,} entries; corrupt {out['corrupt_count']}, dangling pointers "
                   f"{out['dangling_pointers_count']}, shadowed {out['shadowed_count']}, bad vectors {out['bad_vectors_count']}, "
                   f"undecodable removed so far {out['removed_undecodable']}; change log "
                   + ("agrees" if out["log"].get("agrees", True) else f"disagrees ({out['log']})"))
        if "repaired" in out:
            click.echo(f"repaired: {out['repaired']}; now " + ("healthy" if out["after"]["healthy"] else "still unhealthy"))
    if not (out.get("after") or out)["healthy"]:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
