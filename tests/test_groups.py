"""Answer groups: the decision rule on top of the policy, and group assignment (pure logic)."""

from __future__ import annotations

import pytest

from semcache.errors import ConfigError
from semcache.matching.groups import GroupCandidate as C
from semcache.matching.groups import GroupRule, assign_group, gap_of
from semcache.matching.policy import Decision


def decision(entry_id, similarity, hit, threshold=0.9, reason=None):
    return Decision(hit, entry_id, similarity, similarity, threshold, (), reason or ("hit" if hit else "below-threshold"))


RULE = GroupRule(margin=0.04, loose_margin=0.12, reach=0.08, floor=0.7, support=3)


def test_a_hit_with_a_close_rival_answer_is_refused_and_names_the_rival():
    out = RULE.apply(decision(1, 0.93, True), [C(1, 0.93, 10), C(2, 0.91, 20)])
    assert not out.hit and out.reason == "contested:entry 2 at 0.910"
    kept = RULE.apply(decision(1, 0.93, True), [C(1, 0.93, 10), C(3, 0.92, 10), C(2, 0.88, 20)])
    assert kept.hit and kept.reason == "hit"


def test_entries_without_a_group_are_their_own_answer():
    # two lone entries at 0.93 and 0.92: different answers as far as anyone knows
    assert not RULE.apply(decision(1, 0.93, True), [C(1, 0.93), C(2, 0.92)]).hit
    # but an entry whose group is the other's id shares its answer
    assert RULE.apply(decision(1, 0.93, True), [C(1, 0.93), C(2, 0.92, 1)]).hit


def test_a_looser_match_is_served_only_where_the_neighbours_agree():
    agree = [C(1, 0.85, 10), C(2, 0.84, 10), C(3, 0.83, 10), C(4, 0.70, 20)]
    out = RULE.apply(decision(1, 0.85, False), agree)
    assert out.hit and out.reason.startswith("group-agrees:3 of 4")
    # too little support, a rival within loose_margin, below reach, or a failed check: stays a miss
    assert not RULE.apply(decision(1, 0.85, False), agree[:2] + agree[3:]).hit
    assert not RULE.apply(decision(1, 0.85, False), agree[:3] + [C(4, 0.80, 20)]).hit
    assert not RULE.apply(decision(1, 0.81, False), [C(1, 0.81, 10), C(2, 0.80, 10), C(3, 0.80, 10)]).hit
    failed = decision(1, 0.85, False, reason="check-failed:numbers")
    assert not RULE.apply(failed, agree).hit
    assert not GroupRule(loosen=False).apply(decision(1, 0.85, False), agree).hit


def test_the_floor_bounds_the_reach():
    rule = GroupRule(reach=0.5, floor=0.8, support=1, loose_margin=0.0)
    assert not rule.apply(decision(1, 0.79, False), [C(1, 0.79, 10)]).hit
    assert rule.apply(decision(1, 0.81, False), [C(1, 0.81, 10)]).hit


def test_gap_and_assignment():
    cands = [C(1, 0.9, 10), C(2, 0.85, 10), C(3, 0.8, 20)]
    assert gap_of(1, cands) == pytest.approx(0.1)
    assert gap_of(1, cands[:2]) is None
    assert gap_of(9, cands) is None
    # the nearest neighbour that gives the same answer; its group, or its id when it has none
    assert assign_group(7, [(1, None, 0.8, False), (2, 5, 0.7, True), (3, None, 0.75, True)]) == 3
    assert assign_group(7, [(2, 5, 0.7, True)]) == 5
    assert assign_group(7, [(1, None, 0.8, False)]) is None


@pytest.mark.parametrize("bad", [{"margin": -0.1}, {"reach": 2.0}, {"floor": 1.5}, {"support": 0}])
def test_bad_settings_are_named(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        GroupRule(**bad)
