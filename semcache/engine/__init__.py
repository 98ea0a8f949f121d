"""The engine: the ``SemanticCache`` facade, its miss path and singleflight."""

from .cache import Hit, Result, SemanticCache
from .learning import LearningSettings

__all__ = ["Hit", "LearningSettings", "Result", "SemanticCache"]
