"""The engine: the ``SemanticCache`` facade, its miss path and singleflight."""

from .cache import Hit, Result, SemanticCache

__all__ = ["Hit", "Result", "SemanticCache"]
