"""Answer-aware decisions: serve a query from an answer group only when no other answer is as close.

Pure logic. Entries whose stored answers the answer judge (``answers.py``) calls the same share
an *answer group* (``Entry.answer_group``; ``assign_group`` picks it when an entry is stored).
``GroupRule.apply`` runs on top of the match policy's decision, over the same candidates:

- a **hit** stands only when the query is closer to the hit's group than to any candidate of
  another group by ``margin`` (cosine); else it becomes a miss, ``reason="contested"``, and the
  rival is named -- two stored answers that differ are both close, so neither is safe;
- a **miss below the threshold** becomes a hit (``reason="group-agrees"``) when the best candidate
  passed every check, is within ``reach`` of the threshold and at or above ``floor``, at least
  ``support`` candidates share its group,
  and no candidate of another group is within ``loose_margin`` of it: where every nearby stored
  question got the same answer, a looser match gets that answer too.

Why: one threshold cannot fit every neighbourhood. On Banking77 (77 intents of a bank's support)
a rule that knows which stored answers differ doubles the hits of plain cosine at the same wrong
rate (issue 19); see docs/learning.md and benchmarks/results/learning_banking77.json.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ..errors import ConfigError
from .policy import Decision

__all__ = ["GroupCandidate", "GroupRule", "assign_group", "gap_of"]


@dataclass(frozen=True, slots=True)
class GroupCandidate:
    """A candidate of the lookup: its entry id, cosine to the query and answer group (None: its own)."""

    entry_id: int
    similarity: float
    group: int | None = None

    @property
    def answer(self) -> int:
        return self.entry_id if self.group is None else self.group


def assign_group(entry_id: int, neighbours: Sequence[tuple[int, int | None, float, bool]]) -> int | None:
    """Return the answer group of a new entry: that of its nearest neighbour whose answer is the
    same (``neighbours``: (id, group, cosine of the queries, same answer?)), else None (its own)."""
    same = [(similarity, group if group is not None else other) for other, group, similarity, agrees in neighbours if agrees]
    return max(same)[1] if same else None


def gap_of(entry_id: int, candidates: Sequence[GroupCandidate]) -> float | None:
    """Return how much closer the query is to ``entry_id`` than to the nearest candidate of another
    answer group (None: no candidate of another group; the candidate's own gap when it is absent)."""
    chosen = next((c for c in candidates if c.entry_id == entry_id), None)
    if chosen is None:
        return None
    rivals = [c.similarity for c in candidates if c.answer != chosen.answer]
    return chosen.similarity - max(rivals) if rivals else None


@dataclass(frozen=True)
class GroupRule:
    """The answer-aware layer's settings (cosine scale); see the module docstring."""

    # Measured on Banking77 (benchmarks/results/learning_banking77*.json, docs/learning.md): at the
    # 0.93 default these settings serve 1.61x the static default's hits at a lower wrong rate
    # (17.1% / 0.28% against 10.6% / 0.29%); the looser 0.08 / 0.12 / reach 0.08 / support 3
    # (picked at the earlier 0.90 default) served 27.7% at 0.51%. Stricter when unsure.
    margin: float = 0.10
    loose_margin: float = 0.20
    reach: float = 0.04
    floor: float = 0.70
    support: int = 4
    loosen: bool = True

    def __post_init__(self) -> None:
        for name in ("margin", "loose_margin", "reach"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"answer groups '{name}' must be in [0, 1], got {value!r}")
        if not -1.0 <= self.floor <= 1.0:
            raise ConfigError(f"answer groups 'floor' must be a cosine in [-1, 1], got {self.floor!r}")
        if not isinstance(self.support, int) or self.support < 1:
            raise ConfigError(f"answer groups 'support' must be a positive integer, got {self.support!r}")

    def apply(self, decision: Decision, candidates: Sequence[GroupCandidate]) -> Decision:
        """Return the decision with the answer groups' verdict (see the module docstring)."""
        if decision.entry_id is None:
            return decision
        chosen = next((c for c in candidates if c.entry_id == decision.entry_id), None)
        if chosen is None:
            return decision
        rivals = [c for c in candidates if c.answer != chosen.answer]
        rival = max(rivals, key=lambda c: c.similarity, default=None)
        gap = chosen.similarity - (rival.similarity if rival is not None else -1.0)
        named = f"entry {rival.entry_id} at {rival.similarity:.3f}" if rival is not None else "none"
        if decision.hit:
            if gap < self.margin:
                return replace(decision, hit=False, reason=f"contested:{named}")
            return decision
        lowest = max(self.floor, decision.threshold - self.reach)
        if not self.loosen or decision.reason != "below-threshold" or chosen.similarity < lowest:
            return decision
        support = sum(c.answer == chosen.answer for c in candidates)
        if support >= self.support and gap >= self.loose_margin:
            return replace(decision, hit=True, reason=f"group-agrees:{support} of {len(candidates)}, rival {named}")
        return decision
