"""The cache that learns from its own traffic: answer groups, free labels, self-calibration.

Wires the pure rules (``matching.answers``, ``matching.groups``, ``matching.calibration``) to
the store, the index and the embedder; ``SemanticCache`` calls it at four points:

- ``group_of`` when an entry is stored: its answer is judged against the answers of its
  nearest stored neighbours in its partition, and it joins the group of the nearest one that
  gives the same answer (``Entry.answer_group``, persisted, so every process and replica sees it);
- ``decide`` after the match policy: the answer groups' verdict (``GroupRule``), at the
  threshold calibration chose for the request's tenant and partition;
- ``observe`` after a miss was answered upstream: when the lookup's best candidate passed the
  checks and lay in the uncertain band under the threshold (or was contested), the fresh answer
  is judged against the candidate's stored one -- a label at no extra quota;
- ``served`` / ``explored`` / ``feedback``: hits counted by cosine, hits re-asked upstream
  (``verify_fraction``), and users' verdicts, which enter the same evidence.

Evidence is kept per tenant and per (tenant, partition) in the store's tallies
(``storage.protocols.Tallies``: bounded histograms, summed over every process), written by the
cache's flusher, never on the hit path. See docs/learning.md.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..keys import RequestKey
from ..matching.answers import AnswerJudge, answer_text
from ..matching.calibration import Estimate, Evidence, calibrated_threshold, estimate
from ..matching.groups import GroupCandidate, GroupRule, assign_group, gap_of
from ..matching.policy import Decision

__all__ = ["Learning", "LearningSettings", "learning_report", "scope_of"]

log = logging.getLogger("semcache")

NEIGHBOURS = 5  # stored neighbours whose answers a new entry's answer is judged against
MAX_GAPS = 4096  # misses in flight whose lookup evidence waits for their upstream answer
NEIGHBOUR_FLOOR = 0.5  # farther neighbours never share a group: they are not competitors either


def scope_of(tenant: str, partition: str | None = None) -> str:
    """The tallies scope of a tenant (``partition`` None) or of one of its partitions."""
    return f"learn|{tenant}" if partition is None else f"learn|{tenant}|{partition}"


@dataclass(frozen=True)
class LearningSettings:
    """What the learning layer does; everything off but the answer groups by default.

    ``groups``: the answer groups' rule (None: off). ``target_precision``: move the threshold to
    the loosest cosine whose labels support this precision (None: keep the policy's);
    ``floor``: never below this cosine. ``band``: how far under the threshold a missed candidate
    still yields a label. ``verify_fraction``: the share of semantic hits also asked upstream
    (costs quota; 0 = never). ``min_labels``: labels a scope needs before its estimate or
    threshold is trusted.
    """

    groups: GroupRule | None = GroupRule()
    judge: AnswerJudge = AnswerJudge()
    target_precision: float | None = None
    floor: float = 0.75
    band: float = 0.10
    verify_fraction: float = 0.0
    min_labels: int = 30

    def __post_init__(self) -> None:
        if self.target_precision is not None and not 0.5 <= self.target_precision < 1.0:
            raise ConfigError(f"'target_precision' must be in [0.5, 1), got {self.target_precision!r}")
        if not 0.0 <= self.verify_fraction <= 1.0:
            raise ConfigError(f"'verify_fraction' must be in [0, 1], got {self.verify_fraction!r}")
        if not -1.0 <= self.floor <= 1.0 or not 0.0 <= self.band <= 1.0:
            raise ConfigError(f"learning 'floor' must be a cosine and 'band' in [0, 1], got {self.floor!r}, {self.band!r}")
        if not isinstance(self.min_labels, int) or self.min_labels < 1:
            raise ConfigError(f"learning 'min_labels' must be a positive integer, got {self.min_labels!r}")


class Learning:
    """The learning layer of one cache (see the module docstring).

    ``read_entry(id)`` returns a stored entry (or None); ``neighbours(partition, vector, k)``
    returns (ids, cosines) of the stored entries nearest a vector; ``group_of_id(id)`` the
    answer group the index's metadata holds; ``embed`` makes answer vectors; ``store`` keeps
    the tallies when it has them (``add_tallies``/``tallies``), else they stay in this process.
    """

    def __init__(self, settings: LearningSettings, *, store: Any, embed: Callable[[list[str]], np.ndarray],
                 read_entry: Callable[[int], Any], neighbours: Callable, start_threshold: Callable[[], float],
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self._store = store if hasattr(store, "add_tallies") else None
        self._embed, self._read, self._neighbours = embed, read_entry, neighbours
        self._start = start_threshold
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._evidence: dict[str, Evidence] = {}
        self._pending: dict[str, dict[str, int]] = {}
        self._thresholds: dict[str, float] = {}
        self.threshold_path: list[float] = []
        self._gaps: OrderedDict[str, float | None] = OrderedDict()

    # -- evidence ---------------------------------------------------------------------------

    def _add(self, key_tenant: str, partition: str, name: str) -> None:
        with self._lock:
            for scope in (scope_of(key_tenant), scope_of(key_tenant, partition)):
                evidence = self._evidence.get(scope)
                if evidence is None:  # not setdefault: an Evidence is five 200 x 21 arrays, built only when new
                    evidence = self._evidence[scope] = Evidence()
                evidence.add({name: 1})
                pending = self._pending.setdefault(scope, {})
                pending[name] = pending.get(name, 0) + 1
                self._thresholds.pop(scope, None)

    def flush(self) -> None:
        """Write this process's new evidence to the store and read back every process's."""
        if self._store is None:
            return
        with self._lock:
            pending, self._pending = self._pending, {}
        try:
            for scope, deltas in pending.items():
                self._store.add_tallies(scope, deltas)
        except Exception:
            with self._lock:  # kept for the next flush rather than lost
                for scope, deltas in pending.items():
                    mine = self._pending.setdefault(scope, {})
                    for name, amount in deltas.items():
                        mine[name] = mine.get(name, 0) + amount
            raise
        with self._lock:  # refresh what changed here, and every tenant's totals
            scopes = set(pending) | {s for s in self._evidence if s.count("|") == 1}
        for scope in scopes:
            fresh = Evidence.from_tallies(self._store.tallies(scope))
            with self._lock:
                fresh.add(self._pending.get(scope, {}))
                self._evidence[scope] = fresh
                self._thresholds.pop(scope, None)

    def evidence(self, tenant: str, partition: str | None = None) -> Evidence:
        scope = scope_of(tenant, partition)
        with self._lock:
            known = self._evidence.get(scope)
        if known is None and self._store is not None:
            known = Evidence.from_tallies(self._store.tallies(scope))
            with self._lock:
                known = self._evidence.setdefault(scope, known)
        return known if known is not None else Evidence()

    # -- the threshold ----------------------------------------------------------------------

    def threshold(self, key: RequestKey) -> float | None:
        """The calibrated threshold for a request (None: the policy's own)."""
        target = self.settings.target_precision
        if target is None:
            return None
        scope = scope_of(key.tenant, key.partition)
        with self._lock:
            known = self._thresholds.get(scope)
        if known is not None:
            return known
        evidence = self.evidence(key.tenant, key.partition)
        if evidence.labels < self.settings.min_labels:  # too little of its own: the tenant's
            evidence = self.evidence(key.tenant)
        start = self._start()
        floor = min(self.settings.floor, start)
        value = calibrated_threshold(evidence, target=target, start=start, floor=floor, min_labels=self.settings.min_labels)
        with self._lock:
            self._thresholds[scope] = value
            if not self.threshold_path or self.threshold_path[-1] != value:
                self.threshold_path.append(value)
        return value

    # -- lookups ----------------------------------------------------------------------------

    def decide(self, key: RequestKey, decision: Decision, candidates: Sequence[tuple[int, float, int | None]],
               *, groups: bool = True) -> tuple[Decision, float | None]:
        """Apply the answer groups to the policy's decision (``candidates``: (id, cosine, group));
        return it with the chosen candidate's gap to the nearest other answer (None: none near).
        ``groups=False``: the query's route does without the rule (the decision stands).
        A miss's gap is kept (bounded) for the label its upstream answer may bring (``observe``)."""
        grouped = [GroupCandidate(i, s, g) for i, s, g in candidates]
        gap = gap_of(decision.entry_id, grouped) if decision.entry_id is not None else None
        rule = self.settings.groups if groups else None
        decision = decision if rule is None else rule.apply(decision, grouped)
        if not decision.hit and decision.entry_id is not None:
            with self._lock:
                self._gaps[key.exact_key] = gap
                self._gaps.move_to_end(key.exact_key)
                while len(self._gaps) > MAX_GAPS:
                    self._gaps.popitem(last=False)
        return decision, gap

    def served(self, key: RequestKey, decision: Decision, gap: float | None) -> None:
        """Count a semantic hit in its (cosine, gap) cell (the weights of the precision estimate)."""
        self._add(key.tenant, key.partition, Evidence.name("h", decision.similarity, gap))

    def should_verify(self) -> bool:
        fraction = self.settings.verify_fraction
        return fraction > 0 and self._rng.random() < fraction

    # -- stores and labels ------------------------------------------------------------------

    def _answer(self, response: Any) -> tuple[str | None, bool]:
        try:
            return answer_text(response)
        except Exception as exc:  # an undecodable stored answer is simply no evidence
            log.debug("semcache learning: cannot read an answer: %s: %s", type(exc).__name__, exc)
            return None, False

    def _same(self, fresh: Any, stored_ids: Sequence[int]) -> list[bool | None]:
        """Judge a fresh answer against stored entries' answers (None where one cannot be read)."""
        text, prose = self._answer(fresh)
        others: list[tuple[str | None, bool] | None] = []
        for entry_id in stored_ids:
            entry = self._read(entry_id)
            others.append(None if entry is None else self._answer(entry.response))
        judge = self.settings.judge
        wanted = [t for t, p in [(text, prose)] + [o for o in others if o] if t and judge.needs_vector(t, p)]
        wanted = list(dict.fromkeys(wanted))
        vectors = dict(zip(wanted, self._embed(wanted))) if wanted else {}
        out: list[bool | None] = []
        for other in others:
            if other is None:
                out.append(None)
            else:
                out.append(judge.judge(text, other[0], vectors.get(text), vectors.get(other[0]),
                                       prose=prose and other[1]).same)
        return out

    def group_of(self, entry_id: int, partition: str, vector: np.ndarray | None, response: Any) -> int | None:
        """The answer group of an entry about to be stored (None: its own); best effort."""
        if self.settings.groups is None or vector is None:
            return None
        ids, sims, groups = self._neighbours(partition, vector, NEIGHBOURS)
        near = [(i, s, g) for i, s, g in zip(ids, sims, groups) if s >= NEIGHBOUR_FLOOR and i != entry_id]
        if not near:
            return None
        same = self._same(response, [i for i, _, _ in near])
        return assign_group(entry_id, [(i, g, s, bool(v)) for (i, s, g), v in zip(near, same)])

    def observe(self, key: RequestKey, decision: Decision | None, response: Any, gap: float | None = None) -> bool | None:
        """Turn a miss answered upstream into a label when its best candidate was nearly served
        (``gap``: the candidate's gap to the nearest other answer at the lookup).

        Returns whether the candidate would have been right (None: no label was taken).
        """
        if decision is None or decision.entry_id is None or decision.hit:
            return None
        if not (decision.reason == "below-threshold" or decision.reason.startswith("contested")):
            return None  # a failed check: the policy would never serve it at any threshold
        if decision.similarity < decision.threshold - self.settings.band:
            return None
        with self._lock:
            gap = self._gaps.pop(key.exact_key, gap)
        verdict = self._same(response, [decision.entry_id])[0]
        if verdict is None:
            return None
        self._add(key.tenant, key.partition, Evidence.name("r" if verdict else "w", decision.similarity, gap))
        return verdict

    def explored(self, key: RequestKey, decision: Decision, entry_id: int, response: Any) -> bool | None:
        """Label a served hit re-asked upstream (``verify_fraction``)."""
        verdict = self._same(response, [entry_id])[0]
        if verdict is None:
            return None
        self._add(key.tenant, key.partition, Evidence.name("xr" if verdict else "xw", decision.similarity))  # weights unused
        return verdict

    def feedback(self, tenant: str, partition: str, similarity: float, correct: bool) -> None:
        """A user's verdict on a semantic hit at ``similarity``: a label like the free ones."""
        self._add(tenant, partition, Evidence.name("r" if correct else "w", similarity))

    # -- reports ----------------------------------------------------------------------------

    def estimate(self, tenant: str) -> Estimate:
        return _estimate(self.evidence(tenant), self.settings)

    def estimates(self) -> dict[str, Estimate]:
        """The estimate of every tenant this process holds evidence for (memory only: no store read)."""
        with self._lock:
            scopes = {s.split("|", 1)[1]: ev for s, ev in self._evidence.items() if s.count("|") == 1}
        return {tenant: _estimate(ev, self.settings) for tenant, ev in scopes.items()}

    def report(self, tenants: Sequence[str], *, own: str = "") -> dict:
        """The evidence a user sees: the estimated precision of semantic hits and its bound, for the
        cache's own tenant ``own`` and per tenant (``by_tenant``)."""
        out = {"answer_groups": self.settings.groups is not None, "target_precision": self.settings.target_precision,
               "verify_fraction": self.settings.verify_fraction,
               **_estimate(self.evidence(own), self.settings).as_dict(),
               "by_tenant": _tenant_estimates(tenants, self.evidence, self.settings)}
        if self.threshold_path:
            out["threshold"] = self.threshold_path[-1]
        return out


def learning_report(store: Any, tenants: Sequence[str], settings: LearningSettings = LearningSettings()) -> dict:
    """The per-tenant precision estimates a store's tallies hold (``semcache stats`` without a model)."""
    if not hasattr(store, "tallies"):
        return {}
    return _tenant_estimates(tenants, lambda tenant: Evidence.from_tallies(store.tallies(scope_of(tenant))), settings)


def _estimate(evidence: Evidence, settings: LearningSettings) -> Estimate:
    """The precision estimate of ``evidence``, its bound widened by the answer judge's error rates."""
    judge = settings.judge
    return estimate(evidence, min_labels=settings.min_labels, false_different=judge.false_different,
                    false_same=judge.false_same)


def _tenant_estimates(tenants: Sequence[str], evidence_of: Callable[[str], Evidence], settings: LearningSettings) -> dict:
    """{tenant: estimate} for each tenant with any evidence."""
    out = {}
    for tenant in sorted(set(tenants)):
        evidence = evidence_of(tenant)
        if evidence.labels or evidence.hits.any() or evidence.explored:
            out[tenant] = _estimate(evidence, settings).as_dict()
    return out
