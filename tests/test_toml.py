"""TOML settings on Python 3.10: ``tomllib`` is missing there, its backport ``tomli`` reads the same files."""

from __future__ import annotations

import importlib
import sys

import pytest

import semcache.toml
from semcache.config import Settings
from semcache.errors import ConfigError


@pytest.fixture
def without_tomllib(monkeypatch):
    """Make ``import tomllib`` fail as it does on 3.10, and reload the shim; restore both afterwards."""
    monkeypatch.setitem(sys.modules, "tomllib", None)  # None in sys.modules: the import raises ModuleNotFoundError
    yield importlib.reload(semcache.toml)
    monkeypatch.undo()
    importlib.reload(semcache.toml)


def test_without_tomllib_settings_files_are_read_with_tomli(without_tomllib, tmp_path):
    assert without_tomllib.tomllib.__name__ == "tomli"
    path = tmp_path / "s.toml"
    path.write_text('[semcache]\ncache_dir = "from-file"\nrpm = 60\nfallback_models = ["a", "b"]\n')
    settings = Settings.load(config_file=path)
    assert (settings.cache_dir, settings.rpm, settings.fallback_models) == ("from-file", 60, ("a", "b"))


def test_without_tomllib_a_bad_file_is_still_a_config_error_naming_it(without_tomllib, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("cache_dir = \n")
    with pytest.raises(ConfigError, match="bad.toml.*cannot be parsed"):
        Settings.load(config_file=path)


def test_the_shim_is_the_standard_library_where_it_exists():
    assert semcache.toml.tomllib.__name__ == ("tomllib" if sys.version_info >= (3, 11) else "tomli")
