"""The public surface: ``semcache.__all__`` is sorted and every name in it is importable."""

from __future__ import annotations

import semcache


def test_all_is_sorted_and_unique():
    assert semcache.__all__ == sorted(semcache.__all__)
    assert len(set(semcache.__all__)) == len(semcache.__all__)


def test_every_exported_name_is_importable_and_public():
    for name in semcache.__all__:
        member = getattr(semcache, name)
        assert not name.startswith("_")
        # Re-exported classes and functions come from inside the package, not a dependency.
        module = getattr(member, "__module__", "semcache")
        assert module.startswith("semcache"), f"{name} comes from {module}"


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from semcache import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(semcache.__all__)


def test_version_is_exposed():
    assert isinstance(semcache.__version__, str) and semcache.__version__


def test_upstream_names_resolve_on_first_use():
    """``semcache.upstream`` keeps its documented names while importing the SDK only when one is used."""
    import semcache.upstream as upstream
    from semcache.upstream.client import OpenAIUpstream

    assert upstream.__all__ == sorted(upstream.__all__)
    assert upstream.OpenAIUpstream is OpenAIUpstream
    assert set(upstream.__all__) <= set(dir(upstream))
    try:
        upstream.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
