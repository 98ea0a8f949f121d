"""The README's examples (and the marked ones of the docs pages) run as written and print what they say.

Each fenced block in README.md is preceded by a marker comment saying what to do with it (in
docs/*.md only marked blocks run; the others are reference, not claims of a result):

- ``<!-- readme: background NAME -->`` (sh): start it with bash and keep it running (the mock
  upstream, the sidecar) until the end; the port it listens on (``--port N``) must answer;
- ``<!-- readme: python -->``: run it with this Python, in a fresh directory;
- ``<!-- readme: shell -->``: run it with bash (``set -euo pipefail``) in that directory;
- ``<!-- readme: output -->`` (text): what the block before it prints, compared line by line;
- ``<!-- readme: config -->`` (toml): a settings file ``Settings.load`` must accept;
- ``<!-- readme: not run: REASON -->``: not run here, for the reason given.

A block without a marker fails the test: every example either runs or says why not. The ports
of the examples (8099 for the mock, 8080 for the sidecar) are replaced with free ones, and
``semcache`` on PATH runs this checkout's CLI.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from semcache.config import Settings
from semcache.testing.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_MARKER = re.compile(r"^<!-- readme: (?P<kind>background|python|shell|output|config|not run)(?::?\s*(?P<arg>.*?))? -->$")
_FENCE = re.compile(r"^```(?P<lang>\w*)$")


@dataclass
class Block:
    kind: str | None
    arg: str
    lang: str
    code: str
    line: int


def blocks(path: Path) -> list[Block]:
    """Return the fenced blocks of a Markdown file with the marker just before each (None if none)."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j] == "```")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(before)
        out.append(Block(marker["kind"] if marker else None, (marker["arg"] or "") if marker else "", fence["lang"],
                         "\n".join(lines[i + 1:end]) + "\n", i + 1))
        i = end + 1
    return out


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sandbox(tmp_path):
    """A fresh directory, an environment without the caller's settings, ``semcache`` on PATH = this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "semcache"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m semcache.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMCACHE_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONUNBUFFERED="1")
    work = tmp_path / "work"
    work.mkdir()
    return work, env


def test_every_readme_block_is_marked_run_or_not_run_with_a_reason():
    unmarked = [f"README.md:{b.line} ({b.lang or 'no language'})" for b in blocks(README) if b.kind is None]
    assert not unmarked, f"blocks without a <!-- readme: ... --> marker: {unmarked}"
    assert all(b.arg.strip() for b in blocks(README) if b.kind == "not run"), "a 'not run' marker needs its reason"
    kinds = [b.kind for b in blocks(README)]
    assert kinds.count("python") >= 2 and kinds.count("output") >= 3 and "background" in kinds


def run_blocks(path: Path, work: Path, env: dict, ports: dict[str, str]) -> tuple[list[str], list[tuple[str, subprocess.Popen, Path]]]:
    """Run the marked blocks of ``path`` in order; return (mismatches, the background processes still running)."""

    def localize(code: str) -> str:
        return re.sub(r"\b(8099|8080)\b", lambda m: ports[m.group(1)], code)

    background: list[tuple[str, subprocess.Popen, Path]] = []
    mismatches: list[str] = []
    last_output: tuple[Block, str] | None = None
    name = path.relative_to(ROOT)
    try:
        for block in blocks(path):
            where = f"{name}:{block.line}"
            if block.kind == "background":
                log = work / f"{block.arg}.log"
                with log.open("w") as sink:  # the child keeps its own copy of the descriptor
                    process = subprocess.Popen(["bash", "-c", localize(block.code)], cwd=work, env=env,
                                               stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
                background.append((block.arg, process, log))
                port = int(re.search(r"--port (\d+)", localize(block.code))[1])
                deadline = time.monotonic() + 180
                while not _listening(port):
                    assert process.poll() is None and time.monotonic() < deadline, f"{where}: {block.arg} did not start:\n{log.read_text()}"
                    time.sleep(0.2)
            elif block.kind in ("python", "shell"):
                command = [sys.executable, "-c", localize(block.code)] if block.kind == "python" else \
                          ["bash", "-c", "set -euo pipefail\n" + localize(block.code)]
                run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
                assert run.returncode == 0, f"{where} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
                last_output = (block, run.stdout)
            elif block.kind == "output":
                assert last_output is not None, f"{where}: an output block must follow a block that runs"
                source, printed = last_output
                expected = [line.rstrip() for line in localize(block.code).strip().splitlines()]
                got = [line.rstrip() for line in printed.strip().splitlines()]
                if got != expected:
                    mismatches.append(f"{name}:{source.line} printed\n  " + "\n  ".join(got) +
                                      "\nbut the page says\n  " + "\n  ".join(expected))
                last_output = None
            elif block.kind == "config":
                settings_file = work / "readme-settings.toml"
                settings_file.write_text(block.code)
                Settings.load(config_file=settings_file, environ={})
    except BaseException:
        _stop(background)
        raise
    return mismatches, background


def _stop(background: list[tuple[str, subprocess.Popen, Path]]) -> None:
    for _, process, _ in reversed(background):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.model
@pytest.mark.server
@pytest.mark.slow
def test_the_readme_examples_run_and_print_what_the_readme_says(sandbox):
    work, env = sandbox
    ports = {"8099": str(free_port()), "8080": str(free_port())}
    mismatches, background = run_blocks(README, work, env, ports)
    try:
        ready = [line for _, _, log in background for line in log.read_text().splitlines() if "semcache ready on" in line]
        assert len(ready) == 1 and f"127.0.0.1:{ports['8080']}/v1 | upstream http://127.0.0.1:{ports['8099']}/v1" in ready[0]
    finally:
        _stop(background)
    assert not mismatches, "\n\n".join(mismatches)


DOC_PAGES = sorted(p for p in (ROOT / "docs").glob("*.md") if any(b.kind in ("python", "shell") for b in blocks(p)))


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("page", DOC_PAGES, ids=[p.name for p in DOC_PAGES])
def test_the_marked_examples_of_the_docs_pages_run_and_print_what_they_say(sandbox, page):
    work, env = sandbox
    mismatches, background = run_blocks(page, work, env, {"8099": str(free_port()), "8080": str(free_port())})
    _stop(background)
    assert not mismatches, "\n\n".join(mismatches)
