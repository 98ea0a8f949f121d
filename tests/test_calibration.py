"""Self-calibration: Wilson bounds, the precision estimate and the calibrated threshold (pure logic)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from semcache.errors import ConfigError
from semcache.matching.calibration import Evidence, bin_of, calibrated_threshold, estimate, gap_bin, wilson


def test_wilson_contains_the_proportion_and_narrows_with_evidence():
    low, high = wilson(90, 100)
    assert low < 0.9 < high
    low2, high2 = wilson(900, 1000)
    assert high2 - low2 < high - low
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] > 0.65


def test_tallies_round_trip_through_names():
    ev = Evidence()
    ev.add({Evidence.name("r", 0.85, 0.05): 3, Evidence.name("w", 0.85, None): 1, "bogus": 4, "r999_1": 2})
    assert ev.labels == 4
    assert ev.right[bin_of(0.85), gap_bin(0.05)] == 3 and ev.wrong[bin_of(0.85), gap_bin(None)] == 1
    assert bin_of(1.0) == 199 and bin_of(-1.0) == 0 and gap_bin(-5) == 0


def synthetic(rng, n, sims, truth):
    """Labels drawn from a known precision curve ``truth(sim, gap)``."""
    tallies = {}
    for _ in range(n):
        sim, gap = rng.uniform(*sims), rng.uniform(-0.1, 0.2)
        name = Evidence.name("r" if rng.random() < truth(sim, gap) else "w", sim, gap)
        tallies[name] = tallies.get(name, 0) + 1
    return tallies


def truth(sim, gap):
    return 1 / (1 + np.exp(-(20 * (sim - 0.8) + 30 * gap)))


def test_the_estimate_recovers_a_known_precision_and_bounds_it():
    rng = random.Random(3)
    ev = Evidence.from_tallies(synthetic(rng, 4000, (0.7, 0.95), truth))
    hits = {}
    expected = []
    for _ in range(2000):
        sim, gap = rng.uniform(0.85, 0.95), rng.uniform(0.0, 0.2)
        name = Evidence.name("h", sim, gap)
        hits[name] = hits.get(name, 0) + 1
        expected.append(truth(sim, gap))
    ev.add(hits)
    got = estimate(ev)
    assert got.source == "labels"
    assert abs(got.precision - np.mean(expected)) < 0.02
    assert got.low <= got.precision <= got.high


def test_exploration_wins_once_it_has_enough_labels():
    ev = Evidence.from_tallies({Evidence.name("xr", 0.9): 45, Evidence.name("xw", 0.9): 5, Evidence.name("h", 0.9): 50})
    got = estimate(ev, min_labels=30)
    assert got.source == "exploration" and got.precision == pytest.approx(0.9)
    assert estimate(Evidence(), min_labels=30).precision is None


def test_the_judges_own_error_widens_the_bound_and_leaves_the_point():
    """Labels are the answer judge's verdicts: a judge that calls 5% of same answers different
    reads 0.95 * p on hits of true precision p; the bound must still hold p."""
    rng = random.Random(5)
    right = sum(rng.random() < 0.99 * 0.95 for _ in range(400))  # true precision 0.99, judged with 5% false "different"
    ev = Evidence.from_tallies({Evidence.name("xr", 0.95): right, Evidence.name("xw", 0.95): 400 - right,
                                Evidence.name("h", 0.95): 400})
    plain, judged = estimate(ev), estimate(ev, false_different=0.05, false_same=0.01)
    assert plain.high < 0.99 <= judged.high  # the judge's labels alone would exclude the truth
    assert judged.precision == plain.precision and judged.low == pytest.approx(plain.low - 0.01)
    assert judged.high == pytest.approx(min(1.0, plain.high / 0.95))


def test_the_threshold_moves_to_the_loosest_supported_point_and_tightens_on_wrong_hits():
    ev = Evidence()
    for sim in np.arange(0.80, 0.95, 0.01):  # right above 0.85, half wrong below
        ev.add({Evidence.name("r", sim + 0.001): 40})
        if sim < 0.85:
            ev.add({Evidence.name("w", sim + 0.001): 40})
    loose = calibrated_threshold(ev, target=0.95, start=0.95, floor=0.7)
    assert 0.84 <= loose <= 0.86
    ev.add({Evidence.name("w", 0.87): 60})  # evidence of wrong hits above it
    assert calibrated_threshold(ev, target=0.95, start=0.95, floor=0.7) > loose
    assert calibrated_threshold(Evidence(), target=0.95, start=0.95, floor=0.7) == 0.95  # no evidence: no move
    assert calibrated_threshold(ev, target=0.5, start=0.95, floor=0.9) >= 0.9  # never past the floor


def test_bad_calibration_settings_are_named():
    with pytest.raises(ConfigError, match="target precision"):
        calibrated_threshold(Evidence(), target=1.0, start=0.9, floor=0.8)
    with pytest.raises(ConfigError, match="floor"):
        calibrated_threshold(Evidence(), target=0.9, start=0.8, floor=0.9)
