"""Rank statistics: hand-computed small cases, ties, scipy agreement, bootstrap determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archc.search.ranking import bootstrap_interval, kendall_tau, rank_average, spearman_rho


def test_kendall_hand_cases() -> None:
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # pairs (1,2) (1,3) (1,4) (2,3) (2,4) (3,4) of y = 1 3 2 4: one discordant of six → (5 − 1)/6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # ties in x: x = 1 1 2, y = 1 2 3 → C = 2, D = 0, untied pairs 2 (x) and 3 (y): τ-b = 2 / sqrt(6)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def test_spearman_hand_cases() -> None:
    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    # d = 0 1 1 0 → 1 − 6·2/(4·15) = 0.8 (no ties)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # a monotone transform does not change ranks
    assert spearman_rho([0.1, 0.5, 0.2], [1, 100, 3]) == pytest.approx(1.0)


def test_rank_average_ties() -> None:
    assert rank_average([10, 30, 20, 20]).tolist() == [1.0, 4.0, 2.5, 2.5]
    assert rank_average([5, 5, 5]).tolist() == [2.0, 2.0, 2.0]


def test_undefined_is_nan_not_zero() -> None:
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))       # a constant score ranks nothing
    assert math.isnan(spearman_rho([1, 2, 3], [4, 4, 4]))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        spearman_rho([1, float("nan")], [1, 2])


def test_against_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = int(rng.integers(3, 15))
        x = rng.integers(0, 5, size=n).astype(float)   # many ties
        y = x + rng.normal(0, 1.5, size=n).round(0)
        tau_ref = stats.kendalltau(x, y).statistic
        rho_ref = stats.spearmanr(x, y).statistic
        if np.isnan(tau_ref):
            assert math.isnan(kendall_tau(x, y))
        else:
            assert kendall_tau(x, y) == pytest.approx(tau_ref, abs=1e-12)
        if np.isnan(rho_ref):
            assert math.isnan(spearman_rho(x, y))
        else:
            assert spearman_rho(x, y) == pytest.approx(rho_ref, abs=1e-12)


def test_bootstrap_deterministic_and_sensible() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(0, 0.3, size=12)
    a = bootstrap_interval(x, y, kendall_tau, resamples=500, seed=7)
    b = bootstrap_interval(x, y, kendall_tau, resamples=500, seed=7)
    c = bootstrap_interval(x, y, kendall_tau, resamples=500, seed=8)
    assert a == b
    assert a != c
    lo, hi = a
    assert -1.0 <= lo <= kendall_tau(x, y) <= hi <= 1.0
    # perfectly concordant data: every defined resample gives τ = 1
    assert bootstrap_interval([1, 2, 3, 4, 5], [2, 4, 6, 8, 10], resamples=200) == (1.0, 1.0)
    # independent scores: the interval straddles zero
    lo, hi = bootstrap_interval(rng.normal(size=30), rng.normal(size=30), spearman_rho, resamples=500)
    assert lo < 0.0 < hi


def test_bootstrap_edge_cases() -> None:
    assert all(math.isnan(v) for v in bootstrap_interval([1.0], [1.0]))
    assert all(math.isnan(v) for v in bootstrap_interval([1, 1, 1], [1, 2, 3], resamples=50))
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1, 2], [1, 2], level=1.5)
