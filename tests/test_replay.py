"""replay / parse_workload / rate_limit_relief on small generated workloads, and ``semcache bench``.

Most tests use the conftest WordEmbedder, a cosine policy and a ``FunctionUpstream`` that
answers with fixed usage, so every count can be predicted. One CLI test runs the real model
against the bundled mock upstream on loopback.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import semcache.wiring
from semcache import ConfigError, MatchPolicy, RequestError
from semcache.cli import main
from semcache.tools.replay import format_summary, parse_workload, plot_timeline, rate_limit_relief, replay
from semcache.upstream import FunctionUpstream
from semcache.upstream.tokens import count_tokens, estimate_request_tokens
from semcache.tools.workload import generate

FRANCE = "What is the capital of France?"
FRANCE_REORDERED = "the capital of France is what?"  # the same bag of words: cosine 1 with WordEmbedder
USAGE = {"prompt_tokens": 10, "completion_tokens": 5}


def chat(text: str, model: str = "gpt-4o-mini", **params) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


def answer(text: str = "Paris.", usage: dict | None = USAGE) -> dict:
    body = {"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    return {**body, "usage": usage} if usage else body


def write(path, lines) -> str:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


@pytest.fixture
def policy():
    return MatchPolicy.cosine(0.9)


@pytest.fixture
def upstream():
    return FunctionUpstream(lambda request, kind: answer("An answer."))


# -- replaying ---------------------------------------------------------------------------------


def test_generated_chat_workload_saves_what_it_hits(tmp_path, embedder, policy, upstream):
    workload = generate(80, seed=3)
    path = write(tmp_path / "w.jsonl", [r.body for r in workload])
    report = replay(path, embedder=embedder, policy=policy, upstream=upstream, rpm=20, near=3)
    n, hits = len(workload), report["hits"]
    assert report["requests"] == n and report["skipped"] == []
    assert hits["total"] == hits["exact"] + hits["semantic"] and hits["exact"] > 0
    assert hits["total"] >= n - len({r.text for r in workload})  # every repeated text hits
    assert report["misses"] == n - hits["total"] == upstream.calls == report["spent"]["requests"]
    assert report["hit_rate"]["total"] == round(hits["total"] / n, 4)
    # Every upstream answer costs 10 + 5 tokens, so a hit saves exactly that.
    assert report["saved"] == {"requests": hits["total"], "prompt_tokens": 10 * hits["total"], "completion_tokens": 5 * hits["total"],
                               "usd": pytest.approx(hits["total"] * (10 * 0.15 + 5 * 0.60) / 1e6, abs=1e-6), "tokens": 15 * hits["total"]}
    assert report["without_cache"]["tokens"] == 15 * n
    assert report["usage_source"] == {"logged": 0, "upstream": report["misses"], "counted": 0}
    limits = report["rate_limits"]
    assert not limits["timed"]
    assert limits["without_cache"]["min_minutes"] == round(n / 20, 2)
    assert limits["with_cache"]["min_minutes"] == round(report["misses"] / 20, 2)
    assert report["timeline"]["request"][-1] == n and report["timeline"]["with_cache"][-1] == report["misses"]


def test_plain_prompt_lines_without_usage_are_counted_with_tiktoken(tmp_path, embedder, policy):
    upstream = FunctionUpstream(lambda request, kind: {"choices": [{"index": 0, "text": "Paris is the capital."}]})
    path = write(tmp_path / "p.txt", [FRANCE, "", f"  {FRANCE}  ", FRANCE_REORDERED, "How do I sort a list in Python?"])
    report = replay(path, embedder=embedder, policy=policy, upstream=upstream)
    assert report["requests"] == 4  # the blank line is not a request
    assert report["hits"] == {"exact": 1, "semantic": 1, "total": 2}
    assert upstream.calls == 2 and report["usage_source"]["counted"] == 2
    france = estimate_request_tokens({"model": "gpt-4o-mini", "prompt": FRANCE})[0] + count_tokens("Paris is the capital.", "gpt-4o-mini")
    assert report["saved"]["tokens"] == 2 * france
    assert report["saved"]["usd"] > 0  # priced as the default model, since a bare prompt names none


def test_wrapped_lines_use_logged_responses_and_timestamps(tmp_path, embedder, policy):
    minute = 1_700_000_040.0  # 2023-11-14T22:14:00Z, a whole minute
    lines = [{"request": chat(FRANCE), "response": answer(usage={"prompt_tokens": 20, "completion_tokens": 7}), "timestamp": minute + i}
             for i in range(5)]
    lines += [{"request": chat(FRANCE), "response": answer("other"), "timestamp": "2023-11-14T22:15:1%dZ" % i} for i in range(3)]
    path = write(tmp_path / "w.jsonl", lines)
    report = replay(path, embedder=embedder, policy=policy, rpm=2, tpm=1000)  # no upstream needed: all logged
    assert report["hits"]["exact"] == 7 and report["usage_source"] == {"logged": 1, "upstream": 0, "counted": 0}
    assert report["saved"]["tokens"] == 7 * 27  # the stored line's usage, not the later lines' own
    limits = report["rate_limits"]
    assert limits["timestamped_requests"] == 8
    assert limits["timed"] and limits["span_minutes"] == 1.2  # 22:14:00 to 22:15:12
    assert limits["without_cache"] | {"upstream_tokens": None} == {
        "upstream_calls": 8, "upstream_tokens": None, "min_minutes": 4.0, "peak_rpm": 5, "peak_tpm": 5 * 27,
        "minutes_over_limit": 2, "requests_over_rpm": 3 + 1}
    assert limits["with_cache"] == {"upstream_calls": 1, "upstream_tokens": 27, "min_minutes": 0.5, "peak_rpm": 1,
                                    "peak_tpm": 27, "minutes_over_limit": 0, "requests_over_rpm": 0}


def test_malformed_lines_are_reported_with_their_line_numbers_and_skipped(tmp_path, embedder, policy, upstream):
    path = write(tmp_path / "w.jsonl", [
        chat(FRANCE),                                                   # 1
        '{"model": "gpt-4o", "messa',                                   # 2 truncated JSON
        "",                                                             # 3 blank: skipped silently
        {"model": "gpt-4o"},                                            # 4 neither request nor wrapper
        {"model": "gpt-4o", "messages": []},                            # 5 semcache cannot key it
        {"messages": [{"role": "system", "content": "x"}]},             # 6 no user message
        {"request": chat(FRANCE), "timestamp": "yesterday"},            # 7 bad timestamp
        {"request": chat(FRANCE), "response": [1]},                     # 8 bad response
        [1, 2],                                                         # 9 not an object
        chat(FRANCE_REORDERED),                                         # 10
    ])
    report = replay(path, embedder=embedder, policy=policy, upstream=upstream)
    assert report["requests"] == 2 and report["hits"]["semantic"] == 1
    skipped = {s["line"]: s["error"] for s in report["skipped"]}
    assert sorted(skipped) == [2, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in skipped[2] and "wrapper" in skipped[4] and "messages" in skipped[5]
    assert "user" in skipped[6] and "timestamp" in skipped[7] and "response" in skipped[8]


def test_an_empty_or_unusable_workload_is_refused_clearly(tmp_path, embedder, policy):
    empty = write(tmp_path / "empty.jsonl", [])
    with pytest.raises(RequestError, match="no usable request line"):
        replay(empty, embedder=embedder, policy=policy)
    bad = write(tmp_path / "bad.jsonl", ["", {"model": "x"}])
    with pytest.raises(RequestError, match="line 2"):
        parse_workload(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_workload(tmp_path / "missing.jsonl")


def test_a_miss_with_no_response_and_no_upstream_is_a_config_error(embedder, policy):
    with pytest.raises(ConfigError, match="line 1 has no logged response"):
        replay([json.dumps(chat(FRANCE))], embedder=embedder, policy=policy)


def test_near_threshold_pairs_show_scores_and_failed_checks(embedder, upstream):
    policy = MatchPolicy.cosine(0.5, checks=["numbers"])
    lines = [chat("Convert 5 miles to kilometers."), chat("Convert 50 miles to kilometers."),
             chat(FRANCE), chat(FRANCE_REORDERED), chat("What is the capital of France today?")]
    report = replay(lines, embedder=embedder, policy=policy, upstream=upstream, near=1)
    near = report["near_threshold"]
    assert len(near["hits"]) == 1 and len(near["misses"]) == 1
    miss = near["misses"][0]
    assert miss["line"] == 2 and miss["count"] == 1 and miss["failed_checks"] == ["numbers"] and miss["score"] >= 0.5
    assert miss["query"] == "Convert 50 miles to kilometers." and miss["matched"] == "Convert 5 miles to kilometers."
    hit = near["hits"][0]  # the lowest-scoring of the two semantic hits
    assert hit["line"] == 5 and hit["matched"] in (FRANCE, FRANCE_REORDERED) and hit["score"] < 1.0
    assert report["hits"]["semantic"] == 2


def test_a_recurring_near_pair_is_listed_once_with_its_count(embedder, policy, upstream):
    lines = [chat(FRANCE)] + [chat(FRANCE_REORDERED)] * 3
    report = replay(lines, embedder=embedder, policy=policy, upstream=upstream)
    assert report["hits"]["semantic"] == 3
    assert [(p["line"], p["count"]) for p in report["near_threshold"]["hits"]] == [(2, 3)]


def test_high_temperature_requests_only_hit_exactly(embedder, policy, upstream):
    lines = [chat(FRANCE, temperature=1.5), chat(FRANCE_REORDERED, temperature=1.5), chat(FRANCE, temperature=1.5)]
    report = replay(lines, embedder=embedder, policy=policy, upstream=upstream)
    assert report["bypassed_semantic"] == 3
    assert report["hits"] == {"exact": 1, "semantic": 0, "total": 1}


def test_plot_writes_a_png(tmp_path, embedder, policy, upstream):
    report = replay([json.dumps(r.body) for r in generate(30, seed=1)], embedder=embedder, policy=policy, upstream=upstream)
    plot_timeline(report, tmp_path / "calls.png")
    assert (tmp_path / "calls.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 500), st.floats(0, 600)), min_size=1, max_size=60),
       st.none() | st.integers(1, 20), st.none() | st.integers(1, 5000))
def test_the_cache_never_adds_upstream_load(rows, rpm, tpm):
    calls, tokens, stamps = [c for c, _, _ in rows], [t for _, t, _ in rows], [s for _, _, s in rows]
    relief = rate_limit_relief(calls, tokens, stamps, rpm, tpm)
    without, with_cache = relief["without_cache"], relief["with_cache"]
    assert with_cache["upstream_calls"] == sum(calls) <= without["upstream_calls"] == len(rows)
    for name in ("upstream_tokens", "peak_rpm", "peak_tpm", "minutes_over_limit", "requests_over_rpm", "min_minutes"):
        assert (with_cache[name] is None) == (without[name] is None)
        assert with_cache[name] is None or with_cache[name] <= without[name], name


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a refused run must fail before the model loads")

    monkeypatch.setattr(semcache.wiring, "SentenceTransformerEmbedder", refuse)


def test_bench_refuses_an_empty_workload_before_loading_a_model(tmp_path, no_model):
    result = CliRunner().invoke(main, ["bench", "--workload", write(tmp_path / "empty.jsonl", [])])
    assert result.exit_code == 2
    assert "no usable request line" in result.output


def test_bench_real_upstream_without_a_key_exits_2(tmp_path, no_model):
    path = write(tmp_path / "w.jsonl", [chat(FRANCE)])
    result = CliRunner().invoke(main, ["bench", "--workload", path, "--upstream", "real"])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.output


@pytest.mark.model
@pytest.mark.server
def test_bench_real_model_against_the_mock_upstream(tmp_path):
    lines = [r.body for r in generate(40, seed=2)] + ["How do I sort a list in Python?", {"model": "gpt-4o"}]
    path = write(tmp_path / "w.jsonl", lines)
    out = tmp_path / "report.json"
    args = ["bench", "--workload", path, "--rpm", "10", "--near", "2", "--out", str(out)]
    result = CliRunner().invoke(main, args + ["--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == json.loads(out.read_text())
    assert report["requests"] == 41 and [s["line"] for s in report["skipped"]] == [42]
    assert report["hits"]["exact"] > 0 and report["usage_source"]["upstream"] == report["misses"] > 0
    assert report["saved"]["tokens"] > 0 and report["saved"]["usd"] > 0
    assert report["rate_limits"]["with_cache"]["min_minutes"] < report["rate_limits"]["without_cache"]["min_minutes"]
    assert len(report["near_threshold"]["misses"]) <= 2
    text = format_summary(report)  # what the command prints without --json (one model load per test)
    assert "hit rate" in text and "skipped line 42" in text
