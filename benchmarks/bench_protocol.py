"""What the sidecar's own HTTP protocol costs: exact hits through uvicorn's httptools protocol, plain and with
``server.protocol.protocol_class`` (header limits, read timers, redacted access log; #18 items 3-5).

    python -m benchmarks.bench_protocol [--smoke] [--out DIR]

Setup: the mock upstream and the sidecar in this process on 127.0.0.1 (the fake word embedder: the
HTTP layer is what is measured, not the model), the load from a separate process (``bench_server``'s
raw keep-alive client), 8 connections. The same questions are asked first (misses, not measured),
then as exact hits, alternating the two servers (and which goes first) for ``--rounds`` (8) rounds; the result is each one's
median throughput and p50 latency over the rounds, and the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.bench_server import questions, run_phase
from benchmarks.common import machine_info, write_json

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds): checks the script, not the numbers")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rounds, n = (1, 40) if args.smoke else (args.rounds, args.requests)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import WordEmbedder

    from semcache import MatchPolicy, SemanticCache
    from semcache.config import Settings
    from semcache.engine.learning import LearningSettings
    from semcache.server import create_app
    from semcache.server.protocol import protocol_class
    from semcache.testing.mock import create_app as create_mock
    from semcache.testing.serving import running_server

    texts = questions()[:200]
    load = [texts[i % len(texts)] for i in range(n)]
    runs: dict[str, list[dict]] = {"plain": [], "sidecar_protocol": []}
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, running_server(create_mock()) as mock, \
            ProcessPoolExecutor(1, mp_context=spawn) as loadgen:
        settings = Settings(cache_dir=tmp, upstream_base_url=mock + "/v1")
        # Answer groups off: they may refuse later a semantic hit they allowed while seeding (new
        # neighbours with other answers), and a question answered that way was never stored, so
        # the measured phases would not be all hits; the HTTP layer is what is measured here.
        with SemanticCache(tmp, embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9),
                           learning=LearningSettings(groups=None)) as cache:
            # Two apps (each its own engine loop) on one cache: the same entries behind both servers.
            with running_server(create_app(settings, cache=cache, environ={})) as plain, \
                    running_server(create_app(settings, cache=cache, environ={}), http=protocol_class(settings)) as ours:
                loadgen.submit(run_phase, plain, texts, 8, "miss").result()  # seed: every question stored
                for i in range(rounds):  # alternating which goes first
                    order = [("plain", plain), ("sidecar_protocol", ours)]
                    for name, url in order if i % 2 == 0 else order[::-1]:
                        runs[name].append(loadgen.submit(run_phase, url, load, 8, "exact").result())
    summary = {}
    for name, phases in runs.items():
        # Every answer a hit (a few questions are paraphrases of others under the word embedder: semantic hits).
        assert all(p["errors"] == 0 and sum(p["statuses"].values()) == n and "miss" not in p["statuses"] for p in phases), phases
        summary[name] = {"throughput_rps": statistics.median(p["throughput_rps"] for p in phases),
                         "p50_ms": statistics.median(p["latency"]["p50_ms"] for p in phases)}
    summary["throughput_ratio"] = round(summary["sidecar_protocol"]["throughput_rps"] / summary["plain"]["throughput_rps"], 3)
    result = {"benchmark": "protocol", "command": "python -m benchmarks.bench_protocol" + (" --smoke" if args.smoke else ""),
              "machine": machine_info(), "requests_per_round": n, "rounds": rounds, "concurrency": 8, "summary": summary,
              "runs": runs}
    if not args.smoke:
        write_json(args.out / "protocol.json", result)
    print(summary)
    return result


if __name__ == "__main__":
    main()
