"""``make demo``: a generated workload through semcache, against the bundled mock upstream.

Everything runs here, on loopback, with no API key: the mock OpenAI upstream enforces a tight
RPM limit; semcache paces its misses under it and answers repeats and paraphrases itself.
``--via sidecar`` (default) starts the mock and ``semcache serve``'s app and sends the workload
with the official openai SDK pointed at the sidecar; ``--via decorator`` replays it through
``@semcache.cached(client=...)`` in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from typing import Callable, Iterator

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semcache.tools.demo", description=__doc__)
    parser.add_argument("--via", choices=("sidecar", "decorator"), default="sidecar", help="how the workload reaches semcache")
    parser.add_argument("--requests", type=int, default=150, help="requests to replay (default 150)")
    parser.add_argument("--rpm", type=int, default=40, help="the mock upstream's requests-per-minute limit (default 40)")
    parser.add_argument("--latency-ms", type=float, default=150, help="the mock upstream's latency per answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=25, help="print this many requests one by one")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import httpx2

    from semcache.stats import format_table
    from semcache.testing.mock import create_app as create_mock
    from semcache.testing.serving import running_server
    from semcache.tools.workload import INTENTS, generate

    workload = generate(args.requests, seed=args.seed)
    print(f"semcache demo ({args.via}): {len(workload)} chat requests over {len(INTENTS)} intents (repeats, paraphrases\n"
          f"and near misses such as '5 miles' vs '50 miles'), against the bundled mock upstream at {args.rpm} RPM\n"
          f"and {args.latency_ms:.0f} ms a call. Loading the packaged model ...", flush=True)
    with running_server(create_mock(rpm=args.rpm, latency_ms=args.latency_ms, seed=args.seed)) as mock_url, \
            tempfile.TemporaryDirectory(prefix="semcache-demo-") as directory:
        runner = _via_sidecar if args.via == "sidecar" else _via_decorator
        with runner(mock_url + "/v1", directory, args.rpm) as (ask, stats):
            wrong, elapsed, paraphrased = _replay(workload, ask, args.show, args.rpm)
            totals = stats()
        sent_429 = httpx2.get(mock_url + "/mock/stats").json()["responses_429"]
    _report(totals, wrong, elapsed, sent_429, args.rpm, format_table, paraphrased)
    return 0


# request body -> (where the answer came from, "hit" | "miss" | ...): the answer's origin is the
# cache entry the sidecar names (x-semcache-entry-id; a hit is sent with a fresh response id), or
# the stored answer's own id through the decorator.
Ask = Callable[[dict], tuple[str, str]]


@contextlib.contextmanager
def _via_sidecar(upstream_url: str, directory: str, rpm: int) -> Iterator[tuple[Ask, Callable[[], dict]]]:
    """Run the sidecar app on loopback; ask through the official openai SDK."""
    import httpx2
    import openai

    from semcache.config import Settings
    from semcache.server import create_app
    from semcache.testing.serving import running_server

    settings = Settings(cache_dir=directory, upstream_base_url=upstream_url, rpm=rpm, pass_through_key=False)
    app = create_app(settings, environ={"OPENAI_API_KEY": "sk-mock", "SEMCACHE_ADMIN_TOKEN": "demo-admin"})
    with running_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-demo-user", max_retries=0)

        def ask(body: dict) -> tuple[str, str]:
            raw = client.chat.completions.with_raw_response.create(**body)
            return raw.headers.get("x-semcache-entry-id", raw.parse().id), raw.headers.get("x-semcache", "?")

        def stats() -> dict:
            return httpx2.get(url + "/semcache/stats", headers={"Authorization": "Bearer demo-admin"}).json()["total"]

        yield ask, stats
        client.close()


@contextlib.contextmanager
def _via_decorator(upstream_url: str, directory: str, rpm: int) -> Iterator[tuple[Ask, Callable[[], dict]]]:
    """Decorate a function whose arguments are the request; the paced client answers misses."""
    import semcache
    from semcache.upstream.client import Endpoint, OpenAIUpstream

    cache = semcache.SemanticCache(directory)
    upstream = OpenAIUpstream(Endpoint(upstream_url, "sk-mock", name="mock"), rpm=rpm, stats=cache.stats_recorder)

    @semcache.cached(cache=cache, client=upstream)
    def chat(messages, model="gpt-4o-mini", temperature=0):
        """The request is the arguments; on a miss the paced client sends it upstream."""

    def ask(body: dict) -> tuple[str, str]:
        before = chat.cache_info().hits
        answer = chat(body["messages"], model=body["model"], temperature=body["temperature"])
        return answer["id"], "hit" if chat.cache_info().hits > before else "miss"

    def stats() -> dict:
        cache.flush()
        return cache.stats()["total"]

    try:
        yield ask, stats
    finally:
        upstream.close()
        cache.close()


class _WaitWatch:
    """Say so while a request waits on the limiter: a miss still unanswered after ``after_s``
    seconds is being held back to stay under ``rpm`` (the mock answers in well under that)."""

    def __init__(self, rpm: int, after_s: float = 1.0) -> None:
        self.rpm, self.after_s = rpm, after_s
        self.sent: list[float] = []  # when each upstream call (a miss) was asked for

    @contextlib.contextmanager
    def request(self, n: int, text: str) -> Iterator[None]:
        started = time.monotonic()
        recent = [t for t in self.sent if t > started - 60]
        wait = recent[-self.rpm] + 60 - started if len(recent) >= self.rpm else 0.0
        timer = threading.Timer(self.after_s, lambda: print(
            f"  [{n:3d}] waiting  {text[:50]!r}: {len(recent)} upstream calls in the last 60 s, the limit is {self.rpm} RPM; "
            f"the limiter holds this miss ~{max(wait, 0):.0f} s for the next slot instead of sending it into a 429 ...", flush=True))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            held = time.monotonic() - started
            if held >= self.after_s:
                print(f"  [{n:3d}] sent     after {held:.1f} s held by the limiter", flush=True)

    def missed(self, sent_at: float) -> None:
        self.sent.append(sent_at)


def _replay(workload, ask: Ask, show: int, rpm: int) -> tuple[int, float, tuple[int, int]]:
    """Send every request; return (wrong answers, seconds, (paraphrases answerable, answered)).

    A hit is wrong when its answer was first given to another intent (its origin names the entry
    or answer that a miss created). A request is a *paraphrase* when an answer to its intent is
    stored but never for these words: only a semantic match can answer it. A request the
    limiter holds back is announced while it waits (``_WaitWatch``)."""
    intent_of_answer: dict[str, str] = {}
    stored_texts: set[str] = set()
    stored_intents: set[str] = set()
    wrong = paraphrases = answered = 0
    watch = _WaitWatch(rpm)
    started = time.perf_counter()
    for n, request in enumerate(workload, start=1):
        with watch.request(n, request.text):
            origin, status = ask(request.body)
        if status == "miss":
            watch.missed(time.monotonic())  # sent when the limiter admitted it: a held miss only just now
        if request.text not in stored_texts and request.intent in stored_intents:
            paraphrases += 1
            answered += status == "hit" and intent_of_answer.get(origin) == request.intent
        if status == "miss":
            intent_of_answer[origin] = request.intent
            stored_texts.add(request.text)
            stored_intents.add(request.intent)
        elif intent_of_answer.get(origin, request.intent) != request.intent:
            wrong += 1
            print(f"  [{n:3d}] WRONG HIT: {request.text!r} got the answer of intent {intent_of_answer[origin]!r}")
        if n <= show:
            print(f"  [{n:3d}] {status:<5} {request.text}", flush=True)
        elif n == show + 1:
            print("  ... (the rest quietly)", flush=True)
    return wrong, time.perf_counter() - started, (paraphrases, answered)


def _report(stats: dict, wrong: int, elapsed: float, sent_429: int, rpm: int, format_table, paraphrased: tuple[int, int]) -> None:
    requests = stats["requests"]
    hits = stats["exact_hits"] + stats["semantic_hits"]
    print(f"\nDone in {elapsed:.1f} s.\n")
    print(format_table({"total": stats, "by_tenant": {}}))
    print(f"""
What semcache saved on {requests} requests:
  answered from the cache    {hits} ({stats['exact_hits']} exact, {stats['semantic_hits']} semantic)  hit rate {stats['hit_rate']:.0%}
  paraphrases answered       {paraphrased[1]} of the {paraphrased[0]} requests that only a semantic match could answer ({paraphrased[1] / max(paraphrased[0], 1):.0%}): an intent asked before in other words
  upstream calls             {stats['upstream_calls']} instead of {requests}  ({requests - stats['upstream_calls']} requests saved)
  tokens saved               {stats['prompt_tokens_saved']:,} prompt + {stats['completion_tokens_saved']:,} completion (${stats['cost_saved_usd']:.4f} at gpt-4o-mini prices)
  429s from the upstream     {sent_429}: the paced client held {stats['ratelimit_waits']} calls back ({stats['ratelimit_wait_s']:.1f} s in all)
                             to stay under {rpm} RPM, instead of sending them into 429s
  wrong answers served       {wrong} (a hit whose stored answer belongs to another intent)
""")


if __name__ == "__main__":
    sys.exit(main())
