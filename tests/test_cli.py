"""The ``semcache`` command, run in-process with click's CliRunner.

Most tests swap the packaged model for the conftest WordEmbedder (``fake_model``); the few
marked ``model`` load the real one, once each, because CliRunner does not share it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import semcache.wiring
from semcache import MatchPolicy
from semcache.cli import main

from conftest import WordEmbedder

PAIRS = [  # (text_a, text_b, label): paraphrases, near misses and unrelated questions
    ("What is the capital of France?", "Which city is the capital of France?", 1),
    ("What is the capital of France?", "What is the capital of Germany?", 0),
    ("How do I reverse a list in Python?", "What's the way to reverse a Python list?", 1),
    ("How do I reverse a list in Python?", "How do I sort a list in Python?", 0),
    ("Convert 5 miles to kilometers.", "How many kilometers is 5 miles?", 1),
    ("Convert 5 miles to kilometers.", "Convert 50 miles to kilometers.", 0),
    ("When did World War II end?", "In what year did the Second World War end?", 1),
    ("When did World War II end?", "When did World War I end?", 0),
    ("What does HTTP status 404 mean?", "What is an HTTP 404 error?", 1),
    ("What does HTTP status 404 mean?", "What does HTTP status 500 mean?", 0),
    ("How does photosynthesis work?", "Explain photosynthesis.", 1),
    ("How does photosynthesis work?", "How does cellular respiration work?", 0),
    ("How do you say hello in French?", "Translate hello into French.", 1),
    ("How do you say hello in French?", "How do you say hello in Spanish?", 0),
    ("How do I list running Docker containers?", "What command shows the running Docker containers?", 1),
    ("How do I list running Docker containers?", "How do I stop all running Docker containers?", 0),
    ("What is the capital of France?", "What is the capital of France?", 1),
    ("How many hours of sleep do adults need?", "How much sleep does an adult need each night?", 1),
    ("How many hours of sleep do adults need?", "How many hours of sleep do teenagers need?", 0),
    ("What is an inner join in SQL?", "What is a left join in SQL?", 0),
]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def fake_model(monkeypatch):
    """Make every model load in the CLI return the fake word embedder (no model on disk)."""
    monkeypatch.setattr(semcache.wiring, "SentenceTransformerEmbedder", lambda *args, **kwargs: WordEmbedder())


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if a command tries to load the embedding model."""
    def refuse(*args, **kwargs):
        raise AssertionError("this command must not load the embedding model")

    monkeypatch.setattr(semcache.wiring, "SentenceTransformerEmbedder", refuse)
    monkeypatch.setattr("semcache.engine.cache.SentenceTransformerEmbedder", refuse)


@pytest.fixture
def cosine_policy(tmp_path):
    path = tmp_path / "cosine.json"
    MatchPolicy.cosine(0.9).save(path)
    return str(path)


@pytest.fixture
def filled_cache(make_cache, tmp_path):
    """A cache directory built with the fake embedder: 2 entries, 1 exact and 1 semantic hit."""
    directory = tmp_path / "filled"
    cache = make_cache(directory, policy=MatchPolicy.cosine(0.9))
    ask = lambda text, model="gpt-4o-mini": {"model": model, "messages": [{"role": "user", "content": text}]}  # noqa: E731
    cache.complete(ask("What is the capital of France?"), lambda r: "Paris.")
    cache.complete(ask("What is the capital of France?"), lambda r: "unused")
    cache.complete(ask("the capital of France is what?"), lambda r: "unused")
    cache.complete(ask("How do I sort a list in Python?", "gpt-4o"), lambda r: "sorted(xs)")
    cache.close()
    return str(directory)


def invoke(runner, args, **kwargs):
    return runner.invoke(main, args, catch_exceptions=False, **kwargs)


# -- stats / clear ----------------------------------------------------------------------------


def test_stats_prints_a_table_without_loading_the_model(runner, filled_cache, no_model):
    result = invoke(runner, ["stats", "--cache-dir", filled_cache])
    assert result.exit_code == 0, result.output
    assert f"cache {filled_cache}: 2 entries" in result.output
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines()) if cells}
    assert rows["requests"][0] == "4"
    assert rows["exact_hits"][0] == "1"
    assert rows["semantic_hits"][0] == "1"
    assert rows["misses"][0] == "2"
    assert "by model" in result.output and rows["requests"][1:] == ["1", "3"]  # gpt-4o, gpt-4o-mini


def test_stats_json(runner, filled_cache, no_model):
    result = invoke(runner, ["stats", "--cache-dir", filled_cache, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"]["requests"] == 4
    assert data["total"]["hit_rate"] == 0.5
    assert set(data["by_model"]) == {"gpt-4o-mini", "gpt-4o"}
    assert data["by_model"]["gpt-4o-mini"]["requests"] == 3
    assert data["cache"]["entries"] == 2
    assert data["cache"]["directory"] == filled_cache
    assert data["cache"]["bytes_on_disk"] > 0
    assert data["cache"]["built_with"]["model_id"] == WordEmbedder.model_id


def test_stats_reads_cache_dir_from_environment(runner, filled_cache, no_model):
    result = invoke(runner, ["stats", "--json"], env={"SEMCACHE_CACHE_DIR": filled_cache})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cache"]["entries"] == 2


def test_stats_on_missing_directory_exits_2_with_a_clear_message(runner, tmp_path):
    missing = tmp_path / "nowhere"
    result = runner.invoke(main, ["stats", "--cache-dir", str(missing)])
    assert result.exit_code == 2
    assert f"semcache: error: no cache directory at {str(missing)!r}" in result.output
    assert "Traceback" not in result.output
    assert not missing.exists()  # looking must not create it


def test_bad_config_file_exits_2(runner, tmp_path):
    config = tmp_path / "s.toml"
    config.write_text("max_entries = -1\n")
    result = runner.invoke(main, ["stats", "--config", str(config)])
    assert result.exit_code == 2
    assert "'max_entries'" in result.output


def test_clear_yes_deletes_every_entry(runner, filled_cache, no_model):
    result = invoke(runner, ["clear", "--cache-dir", filled_cache, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"deleted 2 entries from {filled_cache}" in result.output
    data = json.loads(invoke(runner, ["stats", "--cache-dir", filled_cache, "--json"]).stdout)
    assert data["cache"]["entries"] == 0
    assert data["total"]["requests"] == 4  # counters are kept without --stats


def test_clear_on_missing_directory_exits_2_and_creates_nothing(runner, tmp_path):
    missing = tmp_path / "typo"
    result = runner.invoke(main, ["clear", "--cache-dir", str(missing), "--yes"])
    assert result.exit_code == 2
    assert "no cache directory" in result.output
    assert not missing.exists()


def test_clear_with_stats_resets_the_counters(runner, filled_cache, no_model):
    assert invoke(runner, ["clear", "--cache-dir", filled_cache, "--yes", "--stats"]).exit_code == 0
    data = json.loads(invoke(runner, ["stats", "--cache-dir", filled_cache, "--json"]).stdout)
    assert data["total"]["requests"] == 0


def test_clear_asks_first_and_keeps_entries_on_no(runner, filled_cache, no_model):
    result = runner.invoke(main, ["clear", "--cache-dir", filled_cache], input="n\n")
    assert result.exit_code == 1  # click's Abort
    data = json.loads(invoke(runner, ["stats", "--cache-dir", filled_cache, "--json"]).stdout)
    assert data["cache"]["entries"] == 2


# -- eval (fake embedder) --------------------------------------------------------------------


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_eval_pairs_csv_with_custom_columns_and_no_labels(runner, tmp_path, fake_model, cosine_policy):
    path = tmp_path / "pairs.csv"
    path.write_text("question,paraphrase\n"
                    "What is the capital of France?,the capital of France is what?\n"
                    "What is the capital of France?,How do I sort a list in Python?\n")
    result = invoke(runner, ["eval", "pairs", str(path), "--text-a", "question", "--text-b", "paraphrase",
                             "--policy", cosine_policy])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 2 and summary["hits"] == 1
    assert summary["precision"] is None and summary["false_positive_rate"] is None
    assert summary["policy"]["kind"] == "cosine"


def test_eval_pairs_threshold_flag_overrides_the_policy(runner, tmp_path, fake_model, cosine_policy):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": "What is the capital of France?",
                                                   "text_b": "What is the capital city of France?", "label": 1}])
    loose = json.loads(invoke(runner, ["eval", "pairs", path, "--policy", cosine_policy, "--threshold", "-1"]).stdout)
    strict = json.loads(invoke(runner, ["eval", "pairs", path, "--policy", cosine_policy, "--threshold", "1"]).stdout)
    assert (loose["hits"], strict["hits"]) == (1, 0)
    assert (loose["policy"]["threshold"], strict["policy"]["threshold"]) == (-1.0, 1.0)


@pytest.mark.parametrize("name, text, line", [
    ("bad.jsonl", '{"text_a": "a", "text_b": "b"}\n{"text_a": "a", "text_b":\n', 2),
    ("bad.jsonl", '{"text_a": "a", "text_b": "b"}\n\n{"text_a": "a"}\n', 3),
    ("bad.csv", "text_a,text_b\na,b\nc,\n", 3),
])
def test_eval_pairs_malformed_line_exits_2_naming_the_line(runner, tmp_path, no_model, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(main, ["eval", "pairs", str(path)])
    assert result.exit_code == 2
    assert f"{name}:{line}:" in result.output
    assert "Traceback" not in result.output


def test_eval_pairs_missing_file_exits_2(runner, tmp_path, no_model):
    result = runner.invoke(main, ["eval", "pairs", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_eval_stream_with_fake_embedder(runner, tmp_path, fake_model, cosine_policy):
    path = write_jsonl(tmp_path / "stream.jsonl", [
        {"text": "What is the capital of France?", "group": "france"},
        {"text": "the capital of France is what?", "group": "france"},
        {"text": "How do I sort a list in Python?", "group": "sort"},
    ])
    result = invoke(runner, ["eval", "stream", path, "--policy", cosine_policy])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["n"], out["hits"], out["wrong_hits"], out["possible_hits"]) == (3, 1, 0, 1)


def test_mock_upstream_bad_faults_exit_2(runner):
    result = runner.invoke(main, ["mock-upstream", "--faults", "bogus:1", "--port", "1"])
    assert result.exit_code == 2
    assert "unknown kind 'bogus'" in result.output


def test_mock_upstream_missing_key_variable_exits_2(runner):
    result = runner.invoke(main, ["mock-upstream", "--api-key-env", "SEMCACHE_TEST_NO_SUCH_KEY"])
    assert result.exit_code == 2
    assert "SEMCACHE_TEST_NO_SUCH_KEY is not set" in result.output


# -- eval with the real model (loads it once per test) ---------------------------------------


@pytest.mark.model
def test_eval_pairs_real_model_jsonl_with_out(runner, tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": a, "text_b": b, "label": y} for a, b, y in PAIRS])
    out = tmp_path / "decisions.jsonl"
    result = invoke(runner, ["eval", "pairs", path, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == len(PAIRS)
    assert 0 < summary["hits"] <= len(PAIRS)
    for name in ("precision", "recall", "f1", "false_positive_rate"):
        assert 0.0 <= summary[name] <= 1.0, name
    assert summary["positives"] == sum(y for _, _, y in PAIRS)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(PAIRS)
    assert all({"score", "hit"} <= set(d) for d in lines)
    assert sum(d["hit"] for d in lines) == summary["hits"]
    exact = [i for i, (a, b, _) in enumerate(PAIRS) if a == b]
    assert [i for i, d in enumerate(lines) if d["reason"] == "exact"] == exact  # in input order
    # Near misses that differ only by a number or a name must not hit (the default policy's checks).
    assert PAIRS[1][1] == "What is the capital of Germany?" and PAIRS[5][1] == "Convert 50 miles to kilometers."
    assert not lines[1]["hit"] and not lines[5]["hit"]


@pytest.mark.model
def test_eval_stream_real_model_with_shuffle_seed(runner, tmp_path):
    rows = []
    for a, b, y in PAIRS:
        rows.append({"text": a, "group": a})
        rows.append({"text": b, "group": a if y else b})
    path = write_jsonl(tmp_path / "stream.jsonl", rows)
    result = invoke(runner, ["eval", "stream", path, "--shuffle-seed", "3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n"] == len(rows)
    for name in ("hits", "hit_rate", "wrong_hits", "wrong_rate", "possible_hits"):
        assert name in out
    assert out["hits"] >= out["exact_hits"] > 0  # the text_a questions repeat
    assert 0 <= out["wrong_hits"] <= out["hits"]
    assert out["possible_hits"] >= out["hits"] - out["wrong_hits"]


@pytest.mark.model
def test_calibrate_refuses_the_hard_negatives_whose_near_misses_the_checks_refuse_first(runner, tmp_path):
    """It once proposed 0.0231 ("expect precision 0.97") here: the checks refuse nearly every negative first."""
    suite = Path(__file__).parent.parent / "benchmarks" / "data" / "hard_negatives.jsonl"
    policy, plot = tmp_path / "policy.json", tmp_path / "curve.png"
    result = invoke(runner, ["calibrate", "--pairs", str(suite), "--target-precision", "0.95", "--out", str(policy),
                             "--plot", str(plot)])
    assert result.exit_code == 2, result.output
    assert "these pairs cannot support a threshold" in result.output
    assert not policy.exists()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the curve that shows why
    assert "Loading weights" not in result.output  # transformers' load bars are hidden


def _calibration_pairs(n: int = 60) -> list[dict]:
    """Paraphrases that share most words and near misses that share fewer: a cosine threshold separates them."""
    rows = []
    for i in range(n):
        topic = f"topic{i}"
        rows.append({"text_a": f"how do I learn {topic} well", "text_b": f"how do I learn {topic} well quickly", "label": 1})
        rows.append({"text_a": f"how do I learn {topic} well", "text_b": f"why would anyone teach {topic} badly", "label": 0})
    return rows


def test_calibrate_writes_a_policy_and_a_plot_that_eval_accepts(runner, tmp_path, fake_model, cosine_policy):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", _calibration_pairs())
    policy, plot = tmp_path / "policy.json", tmp_path / "curve.png"
    result = invoke(runner, ["calibrate", "--pairs", pairs, "--target-precision", "0.9", "--out", str(policy),
                             "--policy", cosine_policy, "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target_precision"] == 0.9 and report["held_out"]["pairs"] > 0
    assert report["fit"]["precision"] >= 0.9
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fitted = MatchPolicy.load(policy)
    assert fitted.threshold == pytest.approx(report["threshold"])
    evaluated = invoke(runner, ["eval", "pairs", pairs, "--policy", str(policy), "--plot", str(tmp_path / "eval.png")])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["policy"]["threshold"] == pytest.approx(report["threshold"])
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_pairs_plot_needs_labels(runner, tmp_path, no_model):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": "a", "text_b": "b"}])
    result = invoke(runner, ["eval", "pairs", pairs, "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "--plot needs a label on every pair" in result.output


def test_calibrate_refuses_an_impossible_target(runner, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": "a", "text_b": "b", "label": 1}])
    result = invoke(runner, ["calibrate", "--pairs", pairs, "--target-precision", "0.9"])
    assert result.exit_code == 2
    assert "at least 20 pairs" in result.output


# -- tune -------------------------------------------------------------------------------------

@pytest.mark.model
@pytest.mark.slow
def test_tune_records_an_adapter_that_the_cache_directory_then_embeds_with(runner, tmp_path):
    from semcache.config import Settings
    from semcache.embedding.adapter import TUNED_ADAPTER
    from semcache.wiring import embedder_from_settings
    from semcache.embedding.adapter import Adapter

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": a, "text_b": b, "label": y} for a, b, y in PAIRS])
    directory = tmp_path / "cache"
    result = invoke(runner, ["tune", "--pairs", pairs, "--cache-dir", str(directory), "--epochs", "2", "--force"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == len(PAIRS) and report["fit_pairs"] + report["held_out_pairs"] == len(PAIRS)
    assert {"best_f1", "roc_auc"} <= set(report["held_out_before"]) and report["steps"] == 2
    adapter = Adapter.load(directory / TUNED_ADAPTER)
    assert adapter.info["source"] == "pairs.jsonl" and adapter.base_model == "all-MiniLM-L6-v2"
    embedder = embedder_from_settings(Settings(cache_dir=str(directory)))
    assert embedder.model_id == f"all-MiniLM-L6-v2+lora-{adapter.digest}"
    assert embedder_from_settings(Settings(cache_dir=str(directory), adapter="none")).model_id == "all-MiniLM-L6-v2"


def test_tune_refuses_a_cache_directory_whose_entries_used_the_old_model(runner, filled_cache, tmp_path, no_model):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": a, "text_b": b, "label": y} for a, b, y in PAIRS])
    result = runner.invoke(main, ["tune", "--pairs", pairs, "--cache-dir", filled_cache])
    assert result.exit_code != 0
    assert "holds 2 entries" in result.output and "semcache clear" in result.output
    assert not (Path(filled_cache) / "tuned-adapter.npz").exists()


# -- serve: exposure flags and refusals (nothing is served: the refusals come before the model loads)


def test_serve_refuses_the_own_key_on_a_public_address_without_client_keys(runner, monkeypatch, no_model):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-own-key")
    result = runner.invoke(main, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2
    assert "refusing to serve on '0.0.0.0'" in result.output and "--open" in result.output
    assert "sk-cli-own-key" not in result.output


def test_serve_refuses_a_bad_client_keys_file(runner, tmp_path, monkeypatch, no_model):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-own-key")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"key_sha256": "nothex", "tenant": "a"}]}))
    result = runner.invoke(main, ["serve", "--client-keys-file", str(path), "--port", "1"])
    assert result.exit_code == 2 and "64 hex digits" in result.output


def test_serve_passes_the_exposure_flags_into_settings(runner, monkeypatch):
    served = []
    monkeypatch.setattr("semcache.server.create_app", lambda settings, **kwargs: None)  # no model, no store
    monkeypatch.setattr("semcache.server.serve", lambda settings, **kwargs: served.append(settings))
    result = invoke(runner, ["serve", "--open", "--allowed-host", "a.example", "--allowed-host", "b.example",
                             "--allowed-origin", "https://app.example", "--client-keys-file", "keys.toml"])
    assert result.exit_code == 0, result.output
    (s,) = served
    assert s.open is True and s.allowed_hosts == ("a.example", "b.example")
    assert s.allowed_origins == ("https://app.example",) and s.client_keys_file == "keys.toml"
    invoke(runner, ["serve"])
    assert served[1].open is False and served[1].allowed_hosts == () and served[1].allowed_origins == ()
