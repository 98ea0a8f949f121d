"""A model per language: each prompt goes, by its detected language, to a model and operating point of its own.

The packaged all-MiniLM-L6-v2 reads English only (Chinese characters all map to ``[UNK]``), so
the languages it cannot read go to a multilingual model (``embedding.multilingual``) with its
own threshold and checks, chosen on Chinese dev data (``benchmarks/chinese.py``). ``LanguageRoutes`` is
an ``Embedder`` whose vectors are the routes' vectors side by side, each in a block of
coordinates of its own and zeros elsewhere: a vector of one model has cosine exactly 0 with
every vector of another, so one index holds both and their entries never answer each other
(a candidate at cosine 0 is under every route's threshold), while each route's cosines are the
model's own, unchanged. ``model_id`` names every route, and a cache directory records it like
a model: a process routing other languages or models refuses to open it (``ConfigError``).

The first route is the primary one: it answers the languages its policy reads
(``MatchPolicy.languages``) that no other route claims. A prompt of a language no route reads
is answered by the exact tier only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..embedding.base import Embedder
from ..embedding.multilingual import MultilingualEmbedder, multilingual_available
from ..errors import ConfigError
from ..matching.language import language_of
from ..matching.policy import MatchPolicy

__all__ = ["MULTILINGUAL_LANGUAGES", "ZH_CHECKS", "ZH_THRESHOLD", "LanguageRoute", "LanguageRoutes", "chinese_policy",
           "with_multilingual"]

# Languages sent to the multilingual model by default: those with an operating point measured on
# labelled data (Chinese: LCQMC and BQ dev pairs and the prompt benchmark's Chinese groups).
MULTILINGUAL_LANGUAGES = ("zh",)
# The Chinese operating point: plain cosine of multilingual-e5-small (4-bit) with the checks,
# chosen on the choose halves of LCQMC/BQ dev and the prompt benchmark's Chinese train+dev stream
# by the rule of the English default (python -m benchmarks.chinese --choose;
# benchmarks/results/chinese.json "operating_point").
ZH_THRESHOLD = 0.985
# The checks the Chinese route runs: those that read Chinese (checks_zh, through the shared names)
# and the language-independent ones; the English question-word check finds nothing to compare in Chinese.
ZH_CHECKS = ("numbers", "units", "versions", "dates", "negation", "quoted", "identifiers", "language", "order",
             "opposites", "time", "operators", "person", "measures", "entities")


def chinese_policy(threshold: float = ZH_THRESHOLD, languages: Sequence[str] = MULTILINGUAL_LANGUAGES) -> MatchPolicy:
    """Return the multilingual route's policy: cosine at the Chinese operating point, with the checks."""
    return MatchPolicy(threshold=threshold, checks=ZH_CHECKS, languages=tuple(languages))


@dataclass(frozen=True)
class LanguageRoute:
    """A model and its operating point for some languages (``policy.languages``).

    ``answer_groups``: whether the answer groups' rule (``matching.groups``) decides this route's
    hits too. Its margins are cosines on the scale of the model they were measured with (MiniLM,
    on Banking77); another model's cosines are spread differently, so a route turns it on only
    once it is measured there.
    """

    embedder: Embedder
    policy: MatchPolicy
    answer_groups: bool = True

    @property
    def languages(self) -> tuple[str, ...]:
        return self.policy.languages


class LanguageRoutes:
    """Embed and match each prompt with its language's route; an ``Embedder`` of block vectors.

    Raises ``ConfigError`` for two routes claiming one language, or a route reading every
    language (``languages=()``) that is not the primary one.
    """

    def __init__(self, routes: Sequence[LanguageRoute]) -> None:
        if not routes:
            raise ConfigError("a language routing needs at least one route")
        self.routes = tuple(routes)
        claimed: dict[str, int] = {}
        for i, route in enumerate(self.routes[1:], start=1):
            if not route.languages:
                raise ConfigError("only the first route may read every language (languages=())")
            for lang in route.languages:
                if lang in claimed:
                    raise ConfigError(f"language {lang!r} is routed twice")
                claimed[lang] = i
        self._claimed = claimed
        self.dim = sum(route.embedder.dim for route in self.routes)
        self._offsets = np.cumsum([0] + [route.embedder.dim for route in self.routes]).tolist()
        self.model_id = "languages(" + "; ".join(
            f"{','.join(route.languages) or '*'}={route.embedder.model_id}" for route in self.routes) + ")"

    def __repr__(self) -> str:
        return f"LanguageRoutes({self.model_id})"

    def route_of(self, text: str) -> int | None:
        """Return the index of the route that answers ``text``, or None (exact tier only)."""
        lang = language_of(text)
        if lang in self._claimed:
            return self._claimed[lang]
        primary = self.routes[0].policy
        return 0 if not primary.languages or lang in primary.languages else None

    def policy_for(self, text: str) -> MatchPolicy | None:
        """Return the policy of ``text``'s route, or None when no route reads its language."""
        index = self.route_of(text)
        return None if index is None else self.routes[index].policy

    def answer_groups_for(self, text: str) -> bool:
        """Whether the answer groups' rule applies to ``text``'s route."""
        index = self.route_of(text)
        return index is not None and self.routes[index].answer_groups

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed each text with its route's model into that route's block (a text no route reads: the primary's)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        by_route: dict[int, list[int]] = {}
        for i, text in enumerate(texts):
            index = self.route_of(text)
            by_route.setdefault(0 if index is None else index, []).append(i)
        for index, rows in by_route.items():
            vectors = self.routes[index].embedder.embed([texts[i] for i in rows])
            start, stop = self._offsets[index], self._offsets[index + 1]
            out[rows, start:stop] = vectors
        return out

    def describe(self) -> list[dict]:
        """Each route's languages, model and policy (for stats and the review page)."""
        return [{"languages": list(route.languages) or ["*"], "model": route.embedder.model_id,
                 "dim": route.embedder.dim, "policy": route.policy.to_dict(), "answer_groups": route.answer_groups}
                for route in self.routes]


def with_multilingual(embedder: Embedder, policy: MatchPolicy, *, languages: Sequence[str] = MULTILINGUAL_LANGUAGES,
                      multilingual: Embedder | None = None,
                      multilingual_policy: MatchPolicy | None = None) -> LanguageRoutes | None:
    """Return routes of ``embedder``/``policy`` (English) plus the multilingual model for ``languages``.

    Returns None when the multilingual extra is not installed (and no ``multilingual`` embedder
    is given) or no language is left to route: those languages then stay exact-only.
    """
    if not languages or (multilingual is None and not multilingual_available()):
        return None
    model = multilingual if multilingual is not None else MultilingualEmbedder()
    second = multilingual_policy if multilingual_policy is not None else chinese_policy(languages=languages)
    # No answer groups on this route: e5 puts any two Chinese questions of one topic within the
    # rule's 0.10 margin of each other, so it contested nearly every hit (the Chinese test stream
    # at 0.985: 1 hit in 220 with the rule, 15 without; benchmarks/results/chinese.json).
    chinese = LanguageRoute(model, dataclasses.replace(second, languages=languages), answer_groups=False)
    return LanguageRoutes((LanguageRoute(embedder, policy), chinese))
