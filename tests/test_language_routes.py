"""A model per language (engine/language_routes.py): each language's own vectors, index block and operating point."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from semcache import SemanticCache
from semcache.config import Settings
from semcache.embedding.multilingual import multilingual_available
from semcache.engine.language_routes import LanguageRoute, LanguageRoutes, chinese_policy, with_multilingual
from semcache.errors import ConfigError
from semcache.matching.policy import MatchPolicy
from semcache.wiring import language_routes_from_settings

from conftest import WordEmbedder


class CharEmbedder:
    """A deterministic embedder for Chinese: the bag of characters, each a fixed random direction."""

    model_id = "test-chars"
    dim = 24

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        rows = []
        for text in texts:
            v = np.zeros(self.dim)
            for ch in text:
                seed = int.from_bytes(hashlib.sha256(ch.encode()).digest()[:8], "little")
                v += np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


ENGLISH = MatchPolicy.cosine(0.9, checks=("numbers", "negation"), languages=("en",))


def routes(zh_threshold: float = 0.9) -> LanguageRoutes:
    return LanguageRoutes((LanguageRoute(WordEmbedder(), ENGLISH), LanguageRoute(CharEmbedder(), chinese_policy(zh_threshold))))


def test_each_language_gets_its_own_block_and_no_cross_model_similarity():
    r = routes()
    assert r.dim == 32 + 24
    vectors = r.embed(["how do I sort a list", "怎么给列表排序"])
    assert np.allclose(vectors[0, 32:], 0) and np.allclose(vectors[1, :32], 0)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert float(vectors[0] @ vectors[1]) == 0.0  # never a candidate above any threshold
    assert r.route_of("how do I sort a list") == 0
    assert r.route_of("怎么给列表排序") == 1
    assert r.route_of("¿cómo ordeno una lista en python?") is None  # no route: exact tier only
    assert "en=test-words" in r.model_id and "zh=test-chars" in r.model_id


def test_a_language_routed_twice_is_a_config_error():
    with pytest.raises(ConfigError, match="routed twice"):
        LanguageRoutes((LanguageRoute(WordEmbedder(), ENGLISH), LanguageRoute(CharEmbedder(), chinese_policy()),
                LanguageRoute(CharEmbedder(), chinese_policy())))
    with pytest.raises(ConfigError, match="first route"):
        LanguageRoutes((LanguageRoute(WordEmbedder(), ENGLISH), LanguageRoute(CharEmbedder(), MatchPolicy.cosine(0.9))))


def test_each_route_answers_with_its_own_threshold_and_checks(tmp_path):
    r = routes(zh_threshold=0.99)
    with SemanticCache(str(tmp_path / "c"), language_routes=r, flush_interval=None) as cache:
        cache.insert("今天北京天气怎么样", "晴")
        cache.insert("how do I sort a list in python", "sorted()")
        # Chinese: the same characters reordered hit (cosine 1 under a bag of characters) ...
        hit = cache.lookup("北京今天天气怎么样")
        assert hit is not None and hit.kind == "semantic" and hit.decision.threshold == 0.99
        # ... a near miss (another day) is refused by the Chinese time check, though close ...
        _, decision = cache.probe("明天北京天气怎么样")
        assert decision is not None and not decision.hit and "time" in decision.reason
        # ... and a text sharing most characters but under the Chinese threshold misses.
        assert cache.lookup("今天北京天气怎么样啊请问一下") is None
        # English keeps its own policy.
        english = cache.lookup("how do i sort a list in python please")
        assert english is not None and english.decision.threshold == 0.9
        # Spanish has no route: only the exact tier answers, nothing is embedded for it.
        embedded = list(r.routes[1].embedder.texts)
        assert cache.lookup("¿cómo ordeno una lista en python?") is None
        assert cache.insert("¿cómo ordeno una lista en python?", "sorted()").embedding is None
        assert r.routes[1].embedder.texts == embedded
        assert cache.lookup("¿cómo ordeno una lista en python?").kind == "exact"
        stats = cache.stats()["cache"]
        assert [route["languages"] for route in stats["language_routes"]] == [["en"], ["zh"]]


def test_a_directory_refuses_another_routing(tmp_path):
    directory = str(tmp_path / "c")
    with SemanticCache(directory, language_routes=routes(), flush_interval=None) as cache:
        cache.insert("今天北京天气怎么样", "晴")
    with pytest.raises(ConfigError, match="models answering each language differ"):
        SemanticCache(directory, embedder=WordEmbedder(), policy=ENGLISH)
    other = LanguageRoutes((LanguageRoute(WordEmbedder(), ENGLISH), LanguageRoute(CharEmbedder(), chinese_policy(languages=("zh", "ja")))))
    with pytest.raises(ConfigError, match="languages"):
        SemanticCache(directory, language_routes=other)
    with SemanticCache(directory, language_routes=routes(), flush_interval=None) as cache:  # the same routing opens it
        assert cache.lookup("今天北京天气怎么样").kind == "exact"


def test_settings_choose_the_routing():
    policy = MatchPolicy.cosine(0.9, languages=("en",))
    embedder = WordEmbedder()
    assert language_routes_from_settings(Settings(multilingual="off"), embedder, policy) is None
    assert language_routes_from_settings(Settings(semantic_languages=("en",)), embedder, policy) is None
    with pytest.raises(ConfigError, match="multilingual"):
        Settings(multilingual="yes")
    auto = language_routes_from_settings(Settings(), embedder, policy)
    if multilingual_available():
        assert auto is not None and auto.route_of("怎么给列表排序") == 1 and auto.routes[0].embedder is embedder
        assert language_routes_from_settings(Settings(multilingual="on"), embedder, policy) is not None
    else:  # without the extra Chinese stays exact-only, and "on" says what to install
        assert auto is None
        with pytest.raises(ConfigError, match=r"semcache\[multilingual\]"):
            language_routes_from_settings(Settings(multilingual="on"), embedder, policy)


def test_with_multilingual_takes_a_given_model():
    r = with_multilingual(WordEmbedder(), ENGLISH, multilingual=CharEmbedder())
    assert r is not None and r.routes[1].languages == ("zh",) and r.routes[1].policy.threshold == chinese_policy().threshold
