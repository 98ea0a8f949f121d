"""TOML reading on every Python semcache supports: ``tomllib`` from 3.11, its backport ``tomli`` on 3.10.

``from semcache.toml import tomllib`` gives the same API (``loads``, ``load``, ``TOMLDecodeError``,
a ``ValueError``) either way; pyproject.toml installs ``tomli`` only where ``tomllib`` is missing.
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib"]
