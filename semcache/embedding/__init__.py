"""Turn texts into unit-norm vectors: the protocol, sentence-transformers, ONNX Runtime, adapters, batching."""

from .base import CachingEmbedder, Embedder
from .sentence import SentenceTransformerEmbedder

__all__ = ["CachingEmbedder", "Embedder", "SentenceTransformerEmbedder"]
