"""The distribution's name is free on PyPI ("semcache" there is another project); the import name and command stay."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

import semcache
from semcache.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_distribution_is_semcache_llm_and_the_command_is_semcache():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "semcache-llm"
    assert project["scripts"] == {"semcache": "semcache.cli:main"}
    assert project["version"] == semcache.__version__


def test_semcache_version_needs_no_installed_metadata():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"semcache, version {semcache.__version__}"
