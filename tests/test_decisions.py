"""The review page's ring of recent decisions: what it keeps, how far back, and the verdicts it notes."""

from __future__ import annotations

from semcache.engine.outcome import Hit, Result
from semcache.keys import normalize
from semcache.matching.checks import Check
from semcache.matching.policy import Decision
from semcache.server.decisions import MAX_QUERY_CHARS, Decisions
from semcache.storage.entry import Entry


def entry(entry_id: int, text: str) -> Entry:
    return Entry.create(response={"answer": text}, id=entry_id, partition="p", exact_key=f"x{entry_id}", query_text=text,
                        embedding=None, model="m", tenant="", prompt_tokens=1, completion_tokens=1, created_at=0.0,
                        expires_at=None)


def result(text: str, score: float, *, served: str | None = None, entry_id: int = 7, threshold: float = 0.9) -> Result:
    key = normalize({"model": "m", "messages": [{"role": "user", "content": text}]}, tenant="t")
    decision = Decision(hit=served is not None, entry_id=entry_id, similarity=score - 0.01, score=score, threshold=threshold,
                        checks=(Check("numbers", True), Check("negation", served is not None, "not vs is")))
    hit = Hit(entry(entry_id, "stored prompt"), served, decision) if served else None
    return Result({}, "hit" if served else "miss", key, hit, entry_id if served else None, decision)


def keep(ring: Decisions, r: Result):
    return ring.record(r, route="/v1/chat/completions", tenant="t", model="m")


def test_it_keeps_semantic_hits_and_near_misses_only():
    ring = Decisions(band=0.1, timer=lambda: 5.0)
    assert keep(ring, result("served", 0.95, served="semantic")).served == "semantic"
    near = keep(ring, result("close", 0.85))
    assert near.served == "refused" and near.stored is None and near.checks[1] == ("negation", False, "not vs is")
    assert keep(ring, result("far", 0.79)) is None  # below threshold - band
    assert keep(ring, result("exact", 1.0, served="exact")) is None  # the key decided, not a score
    assert keep(ring, result("x" * (MAX_QUERY_CHARS + 1), 0.95, served="semantic")) is None
    assert [d.query for d in ring.recent()] == ["close", "served"]  # newest first
    assert ring.recent()[1].stored == "stored prompt" and ring.recent()[1].at == 5.0


def test_it_is_bounded_and_notes_verdicts():
    ring = Decisions(size=3, band=0.1)
    for i in range(5):
        keep(ring, result(f"q{i}", 0.95, served="semantic", entry_id=i % 2))
    assert len(ring) == 3 and [d.query for d in ring.recent()] == ["q4", "q3", "q2"]
    assert ring.judge(0, "q4", False) == 1 and ring.judge(0, "q9", False) == 0
    assert ring.judge(0, None, True) == 2  # q4 and q2 are entry 0's
    assert [d.verdict for d in ring.recent()] == [True, None, True]
