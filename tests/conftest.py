"""Shared fakes: a deterministic embedder, a hand-advanced clock, a temporary cache."""

from __future__ import annotations

import hashlib
import logging
import os
import re

import numpy as np
import pytest

from semcache import SemanticCache

_WORD = re.compile(r"\w+")


class WordEmbedder:
    """A deterministic embedder: the bag of words, each word a fixed random direction.

    Texts sharing most words are close; it needs no model, so unit tests stay instant.
    """

    model_id = "test-words"
    dim = 32

    def __init__(self) -> None:
        self.calls = 0

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def embed(self, texts):
        self.calls += 1
        rows = []
        for text in texts:
            words = _WORD.findall(text.lower()) or ["<empty>"]
            v = sum(self._word(w) for w in words)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


class Clock:
    """A clock that moves only when told: ``clock.advance(seconds)``, or by sleeping on it.

    ``sleep``/``asleep`` advance it and record the wait, so code that waits (the limiter,
    retries) runs instantly and its waits can be checked exactly.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture(scope="session")
def _onnx_cache(tmp_path_factory):
    """One directory per test run for exported ONNX graphs (90 MB each), not the user's ~/.cache."""
    return str(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, _onnx_cache):
    for name in list(os.environ):
        if name.startswith(("SEMCACHE_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEMCACHE_ONNX_CACHE", _onnx_cache)


class _LookupBugs(logging.Handler):
    """Collects "semcache lookup bug" records: a programming error that a lookup failed open on."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("semcache lookup bug"):
            self.records.append(record)


@pytest.fixture(autouse=True)
def _no_lookup_bugs(request):
    """Fail any test during which a lookup failed open on a bug (a TypeError, say): fail-open must
    not hide one as a lower hit rate. Tests that provoke one on purpose are marked ``lookup_bug``."""
    handler = _LookupBugs()
    logger = logging.getLogger("semcache")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("lookup_bug") is None:
        pytest.fail(f"a lookup failed open on a bug: {handler.records[0].getMessage()}")


@pytest.fixture
def embedder():
    return WordEmbedder()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_cache(tmp_path, embedder, clock):
    """Build SemanticCaches in a temporary directory with the fake embedder and clock."""
    caches = []

    def make(directory=None, **kwargs):
        kwargs.setdefault("embedder", embedder)
        kwargs.setdefault("timer", clock)
        cache = SemanticCache(str(directory or tmp_path / "cache"), **kwargs)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        try:
            cache.close()
        except Exception:
            pass
