"""Progress on the command line: nothing for quick operations, a rich bar once one has run the delay."""

from __future__ import annotations

import io
import time

from rich.console import Console

from semcache.tools.progress import progress, working


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_an_operation_shorter_than_the_delay_prints_nothing():
    console, out = _terminal()
    with progress(10, "embedding", delay=5.0, console=console) as bar:
        bar.update(10)
    with working("loading the embedding model", delay=5.0, console=console):
        pass
    assert out.getvalue() == ""


def test_a_long_operation_shows_its_bar_with_counts():
    console, out = _terminal()
    with progress(40, "replaying", delay=0.05, console=console) as bar:
        for _ in range(4):
            bar.update(10)
            time.sleep(0.05)
    text = out.getvalue()
    assert "replaying" in text and "40/40" in text


def test_a_long_wait_shows_a_spinner_that_goes_away():
    console, out = _terminal()
    with working("loading the embedding model", delay=0.05, console=console):
        time.sleep(0.3)
    assert "loading the embedding model" in out.getvalue()


def test_not_on_a_terminal_nothing_is_drawn():
    out = io.StringIO()
    with progress(3, "replaying", delay=0.0, console=Console(file=out, force_terminal=False)) as bar:
        time.sleep(0.1)
        bar.update(3)
    assert out.getvalue() == ""
