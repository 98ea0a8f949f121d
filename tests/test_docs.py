"""The documentation site builds strictly (MkDocs), lists every page, and the README's links resolve.

``make test`` installs the ``docs`` extra, so mkdocs is always there when the suite runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _nav_pages(nav) -> list[str]:
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_site_builds_strictly(tmp_path):
    """A broken link or anchor, or a page missing from the nav, is a warning, and --strict fails on it."""
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                          "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "sidecar.html").is_file()  # plain files: the site browses from the disk


def test_the_nav_lists_every_page_once():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = _nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)


def test_the_readme_links_point_at_files_that_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the docs pages"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


def test_the_readme_is_a_newcomers_read():
    """Issue 21: at most ~250 lines, and the commands a sidecar user needs come early."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert next(i for i, line in enumerate(lines) if "semcache serve" in line) < 110


def test_every_flag_in_the_command_line_page_exists():
    """docs/cli.md's synopsis names real commands and real flags (a renamed flag fails here)."""
    import click

    from semcache.cli import main

    text = (ROOT / "docs" / "cli.md").read_text()
    synopsis = text[text.index("```\n") + 4:text.index("```", text.index("```\n") + 4)]
    usages, current = [], None
    for line in synopsis.splitlines():
        if line.startswith("semcache "):
            current = [line]
            usages.append(current)
        elif current is not None:
            current.append(line)  # a continuation line of the same command
    assert len(usages) >= 11
    commands = set()
    for usage in usages:
        words = " ".join(usage).split()[1:]
        command: click.Command = main
        while isinstance(command, click.Group):
            command = command.commands[words.pop(0)]
        commands.add(command.name)
        known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        flags = set(re.findall(r"(--[a-z][a-z-]*)", " ".join(usage)))
        assert flags <= known, f"{command.name}: {sorted(flags - known)} not flags of the command"
    assert commands >= {"serve", "stats", "pairs", "stream", "calibrate", "tune", "bench", "demo", "clear", "doctor", "mock-upstream"}


def test_the_default_threshold_the_readme_names_is_the_code_s():
    """The README states the default threshold in three places; the matching default moves (issue 17)."""
    from semcache.matching.policy import DEFAULT_THRESHOLD

    readme = (ROOT / "README.md").read_text()
    assert f"({DEFAULT_THRESHOLD:.2f} by default" in readme
    assert f"policy threshold {DEFAULT_THRESHOLD:g}, languages en" in readme
    assert f"| cosine {DEFAULT_THRESHOLD:.2f} |" in readme
