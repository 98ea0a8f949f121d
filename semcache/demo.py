"""``make demo``: replay a generated workload through ``@semcache.cached`` against the mock upstream.

Everything runs here, on loopback: the bundled mock OpenAI upstream enforces a tight RPM limit,
the paced client keeps under it, and the cache answers repeats and paraphrases. No API key.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semcache.demo", description=__doc__)
    parser.add_argument("--requests", type=int, default=150, help="requests to replay (default 150)")
    parser.add_argument("--rpm", type=int, default=40, help="the mock upstream's requests-per-minute limit (default 40)")
    parser.add_argument("--latency-ms", type=float, default=150, help="the mock upstream's latency per answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=25, help="print this many requests one by one")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import httpx2

    import semcache
    from semcache.serving import running_server
    from semcache.stats import format_table
    from semcache.upstream import Endpoint, OpenAIUpstream
    from semcache.upstream.mock import create_app
    from semcache.workload import INTENTS, generate

    workload = generate(args.requests, seed=args.seed)
    print(f"semcache demo: {len(workload)} chat requests over {len(INTENTS)} intents (repeats, paraphrases and "
          f"near misses such as '5 miles' vs '50 miles'),\nagainst the bundled mock upstream at {args.rpm} RPM "
          f"and {args.latency_ms:.0f} ms a call. Loading the packaged model ...", flush=True)

    mock = create_app(rpm=args.rpm, latency_ms=args.latency_ms, seed=args.seed)
    with running_server(mock) as url, tempfile.TemporaryDirectory(prefix="semcache-demo-") as directory:
        cache = semcache.SemanticCache(directory)
        upstream = OpenAIUpstream(Endpoint(url + "/v1", "sk-demo", name="mock"), rpm=args.rpm,
                                  stats=cache.stats_recorder)

        @semcache.cached(cache=cache, client=upstream)
        def ask(messages, model="gpt-4o-mini", temperature=0):
            """The request is the arguments; on a miss the paced client sends it upstream."""

        intent_of_answer: dict[str, str] = {}
        wrong = 0
        started = time.perf_counter()
        for n, request in enumerate(workload, start=1):
            before = ask.cache_info()
            answer = ask(request.body["messages"], model=request.body["model"], temperature=0)
            after = ask.cache_info()
            status = "hit " if after.hits > before.hits else "miss"
            if status == "miss":
                intent_of_answer[answer["id"]] = request.intent
            elif intent_of_answer.get(answer["id"]) != request.intent:
                wrong += 1
                print(f"  [{n:3d}] WRONG HIT: {request.text!r} got the answer of intent {intent_of_answer.get(answer['id'])!r}")
            if n <= args.show:
                print(f"  [{n:3d}] {status}  {request.text}", flush=True)
            elif n == args.show + 1:
                print("  ... (the rest quietly)", flush=True)
        elapsed = time.perf_counter() - started
        cache.flush()
        stats = cache.stats()["total"]
        mock_stats = httpx2.get(url + "/mock/stats").json()
        upstream.close()
        cache.close()

    requests = stats["requests"]
    hits = stats["exact_hits"] + stats["semantic_hits"]
    print(f"\nDone in {elapsed:.1f} s.\n")
    print(format_table({"total": stats, "by_tenant": {}}))
    sent_429 = mock_stats["responses_429"]
    print(f"""
What semcache saved on {requests} requests:
  answered from the cache    {hits} ({stats['exact_hits']} exact, {stats['semantic_hits']} semantic)  hit rate {stats['hit_rate']:.0%}
  upstream calls             {stats['upstream_calls']} instead of {requests}  ({requests - stats['upstream_calls']} requests saved)
  tokens saved               {stats['prompt_tokens_saved']:,} prompt + {stats['completion_tokens_saved']:,} completion (${stats['cost_saved_usd']:.4f} at gpt-4o-mini prices)
  429s from the upstream     {sent_429}: the paced client held {stats['ratelimit_waits']} calls back ({stats['ratelimit_wait_s']:.1f} s in all)
                             to stay under {args.rpm} RPM, instead of sending them into 429s
  wrong answers served       {wrong} (a hit whose stored answer belongs to another intent)
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
