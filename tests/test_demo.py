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
    assert re.search(r"paraphrases answered\s+\d+ of the \d+ requests that only a semantic match could answer", out)


def test_demo_rejects_a_bad_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--requests", "many"])
    assert exc.value.code == 2
    assert "--requests" in capsys.readouterr().err
