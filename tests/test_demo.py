"""``python -m semcache.tools.demo`` end to end: real model, real mock upstream on loopback."""

from __future__ import annotations

import re

import pytest

from semcache.tools import demo


@pytest.mark.model
@pytest.mark.server
@pytest.mark.parametrize("via", ["sidecar", "decorator"])
def test_demo_runs_end_to_end_and_reports_savings(capsys, via):
    assert demo.main(["--via", via, "--requests", "30", "--rpm", "600", "--latency-ms", "0", "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert f"semcache demo ({via}): 30 chat requests" in out
    shown = re.findall(r"^\s+\[\s*\d+\] (hit |miss)", out, flags=re.MULTILINE)
    assert len(shown) == 3  # --show 3 prints three requests one by one
    assert "... (the rest quietly)" in out
    assert "What semcache saved on 30 requests:" in out
    hits = int(re.search(r"answered from the cache\s+(\d+)", out).group(1))
    calls, total = map(int, re.search(r"upstream calls\s+(\d+) instead of (\d+)", out).groups())
    assert total == 30
    assert hits > 0  # a Zipf workload of 30 requests repeats its head intents
    assert calls + hits == 30
    assert re.search(r"tokens saved\s+[\d,]+ prompt \+ [\d,]+ completion", out)
    assert re.search(r"wrong answers served\s+0\b", out)
    answered, paraphrases = map(int, re.search(r"paraphrases answered\s+(\d+) of the (\d+) requests that only a semantic match could answer", out).groups())
    semantic = int(re.search(r"answered from the cache\s+\d+ \(\d+ exact, (\d+) semantic\)", out).group(1))
    # With no wrong answer, every semantic hit is a paraphrase answered (a hit's response id is fresh:
    # the demo must tell where an answer came from by the entry, or it counts none).
    assert answered == semantic <= paraphrases


def test_demo_rejects_a_bad_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--requests", "many"])
    assert exc.value.code == 2
    assert "--requests" in capsys.readouterr().err


def test_a_request_the_limiter_holds_is_announced_while_it_waits(capsys):
    watch = demo._WaitWatch(rpm=2, after_s=0.05)
    now = demo.time.monotonic()
    watch.missed(now - 50)  # two calls in the last minute: the third waits ~10 s for the first to age out
    watch.missed(now - 1)
    with watch.request(7, "What is the capital of France?"):
        demo.time.sleep(0.3)
        during = capsys.readouterr().out  # printed while the request is still held
    after = capsys.readouterr().out
    assert re.search(r"\[  7\] waiting  'What is the capital of France\?': 2 upstream calls in the last 60 s, "
                     r"the limit is 2 RPM; the limiter holds this miss ~10 s", during)
    assert re.search(r"\[  7\] sent     after 0\.\d s held by the limiter", after)


def test_a_quick_request_is_not_announced(capsys):
    watch = demo._WaitWatch(rpm=2, after_s=1.0)
    with watch.request(1, "hi"):
        pass
    assert capsys.readouterr().out == ""


@pytest.mark.model
@pytest.mark.server
def test_the_semcache_demo_command_runs_the_demo():
    from click.testing import CliRunner

    from semcache.cli import main

    result = CliRunner().invoke(main, ["demo", "--via", "decorator", "--requests", "12", "--rpm", "600", "--latency-ms", "0",
                                       "--show", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "semcache demo (decorator): 12 chat requests" in result.stdout
    assert "What semcache saved on 12 requests:" in result.stdout
