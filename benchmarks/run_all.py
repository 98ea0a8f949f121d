"""Run the whole benchmark suite (``make bench``), then write benchmarks/results/REPORT.md.

    python -m benchmarks.run_all [--smoke] [--pairs PATH] [--out DIR] [--only NAME,...]

Each benchmark runs as its own subprocess (``python -m benchmarks.<script>``), in sequence, so
one that fails or runs out of memory cannot take the others down and each gets a clean process
(faiss thread settings, loaded models). Every script writes its own JSON into ``--out``; this
driver writes ``run_all.json`` (what ran, exit codes, durations) and calls ``benchmarks.report``.

QQP data is used when present: ``--pairs`` defaults to ``../shared/data/qqp_dev.jsonl`` from the
project root when that file exists (read by path, never copied); ``benchmarks.quality`` reads the
other shared sets (Banking77, GPTCache's paraphrases) from ``../shared/data`` itself. The full
suite is sized to end within ~35 minutes on a 2-core CPU (the learning replays add ~5); ``--smoke`` runs every script's smoke mode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .common import machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
# Sizes for a <= 30-minute run on 2 cores: the engine end to end at 1k/10k/100k entries, the
# index alone at 10k/100k/1M synthetic vectors (1M entries in the engine would take the whole budget
# to fill a DiskStore), fewer lookups than the script's default.
LOOKUP_FULL = ["--sizes", "1000,10000,100000", "--index-sizes", "10000,100000,1000000", "--nprobes", "8,16,32",
               "--lookups", "1000", "--inserts", "500"]


def steps(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """Return (name, argv after ``python -m``) for every benchmark in the suite, in run order."""
    out = str(args.out)
    smoke = ["--smoke"] if args.smoke else []
    quality = ["benchmarks.quality", "--out", str(args.out / "quality.json"), "--plot", str(args.out / "quality.png"),
               *smoke, *(["--pairs", args.pairs] if args.pairs else [])]
    lookup = ["benchmarks.bench_lookup", "--out", out, *(["--smoke"] if args.smoke else LOOKUP_FULL)]
    peers = ["benchmarks.bench_peers", "--out", out, *smoke, *(["--pairs", args.pairs] if args.pairs else [])]
    if not args.smoke:
        peers += ["--model-requests", "600"]
    return [
        ("quality", quality),
        ("peers", peers),
        ("quota", ["benchmarks.bench_quota", "--out", out, *smoke]),
        ("sidecar", ["benchmarks.bench_server", "--out", out, *smoke]),
        ("cluster", ["benchmarks.bench_cluster", "--out", out, *smoke]),
        ("lookup", lookup),
        ("chinese", ["benchmarks.chinese", "--latency", "--out", out, *smoke]),
        *learning_steps(args),
    ]


def learning_steps(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The cache that learns (``benchmarks.learning``) on the report streams, at the shipped settings.

    One step per stream (the learning runs only: the static default's figures are ``quality``'s);
    a smoke run replays 200 of the prompt benchmark's requests once; the QQP and Banking77 streams
    need ../shared/data."""
    def step(stream: str, name: str, sample: str, seeds: str) -> tuple[str, list[str]]:
        return (f"learning_{name}", ["benchmarks.learning", "--stream", stream, "--sample", sample, "--seeds", seeds,
                                     "--skip-static", "--out", str(args.out / f"learning_{name}_default.json")])

    if args.smoke:
        return [step("quality:prompts", "prompts", "200", "1")]
    out = [step("quality:prompts", "prompts", "0", "5")]
    if not args.no_shared_data and (SHARED / "qqp_dev.jsonl").exists():
        out.append(step("quality:qqp", "qqp", "0", "5"))
    if not args.no_shared_data and (SHARED / "banking77_train.jsonl").exists():
        out.append(step(str(SHARED / "banking77_train.jsonl"), "banking77", "3000", "5"))
    return out


def run_step(name: str, argv: list[str], log_dir: Path) -> dict:
    """Run one benchmark as a subprocess; keep its output in ``log_dir/<name>.log``."""
    command = [sys.executable, "-m", *argv]
    print(f"[run_all] {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    log_path = log_dir / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = round(time.perf_counter() - start, 1)
    print(f"[run_all] {name}: exit {rc} after {seconds} s (log {log_path})", file=sys.stderr, flush=True)
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    return {"name": name, "command": "python -m " + " ".join(argv), "exit_code": rc, "seconds": seconds,
            "log": str(log_path), "tail": tail if rc else []}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every script's smoke mode (a minute or two in all)")
    parser.add_argument("--pairs", help="labelled QQP pairs (default ../shared/data/qqp_dev.jsonl when present)")
    parser.add_argument("--no-shared-data", action="store_true", help="ignore ../shared/data even when present")
    parser.add_argument("--only", help="comma-separated step names to run (quality,peers,quota,sidecar,cluster,lookup,chinese,learning_prompts,...)")
    parser.add_argument("--out", type=Path, help="results directory (default benchmarks/results; smoke: a temporary one)")
    args = parser.parse_args(argv)
    if not args.no_shared_data:
        if args.pairs is None and (SHARED / "qqp_dev.jsonl").exists():
            args.pairs = str(SHARED / "qqp_dev.jsonl")
    # A smoke run must never overwrite the real results.
    default = Path(tempfile.gettempdir()) / "semcache-bench-smoke" if args.smoke else RESULTS
    args.out = (args.out or default).resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite and write REPORT.md; return 0 when every step exited cleanly, else 1."""
    args = parse_args(argv)
    from . import report

    wanted = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    ran = [run_step(name, step, args.out / "logs") for name, step in steps(args) if wanted is None or name in wanted]
    summary = {
        "command": "python -m benchmarks.run_all " + " ".join(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke,
        "pairs": args.pairs,
        "machine": machine_info(),
        "steps": ran,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out / "run_all.json", summary)
    path = report.write_report(args.out)
    print(f"[run_all] {summary['total_seconds']} s in all; wrote {path}", file=sys.stderr)
    print(json.dumps({s["name"]: s["exit_code"] for s in ran}))
    return 0 if all(s["exit_code"] == 0 for s in ran) else 1


if __name__ == "__main__":
    raise SystemExit(main())
