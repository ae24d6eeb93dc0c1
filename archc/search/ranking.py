"""Rank statistics for checking that a cheap score ranks architectures as an expensive one does.

* :func:`kendall_tau` — Kendall's τ-b: (concordant − discordant) pairs over the geometric mean of the
  pairs untied in each ranking, ``(C − D) / sqrt((n0 − n1)(n0 − n2))`` with ``n0 = n(n−1)/2`` and
  ``n1``/``n2`` the pairs tied in ``x``/``y``. Equal to τ-a without ties; the variant scipy computes.
* :func:`spearman_rho` — Spearman's ρ: the Pearson correlation of the ranks, ties given their mean
  rank (so it stays exact with ties, unlike the ``1 − 6Σd²/(n(n²−1))`` shortcut).
* :func:`bootstrap_interval` — a percentile bootstrap interval of either statistic, resampling the
  *pairs* (architectures) with replacement from a seeded generator: deterministic for a seed.

Both statistics are ``nan`` when undefined (fewer than two items, or one ranking constant), never a
silent zero: a constant score is a defect to report, not "no correlation".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["kendall_tau", "spearman_rho", "rank_average", "bootstrap_interval", "STATISTICS"]


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"rankings of different lengths: {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rankings must hold finite numbers")
    return a, b


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two scorings of the same items (nan when fewer than 2 items or one is constant).

    >>> kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    0.6666666666666666
    """
    a, b = _pair(x, y)
    n = a.size
    if n < 2:
        return float("nan")
    # O(n²) pair signs: the checks rank tens of architectures, and this is exact and easy to verify
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(n, 1)
    sa, sb = da[iu], db[iu]
    s = float((sa * sb).sum())
    untied_a = float(np.count_nonzero(sa))
    untied_b = float(np.count_nonzero(sb))
    if untied_a == 0 or untied_b == 0:
        return float("nan")
    return s / math.sqrt(untied_a * untied_b)


def rank_average(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties given the mean of the ranks they span.

    >>> rank_average([10, 30, 20, 20]).tolist()
    [1.0, 4.0, 2.5, 2.5]
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    sorted_a = a[order]
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (Pearson correlation of mean ranks); nan when fewer than 2 items or one is constant.

    >>> spearman_rho([1, 2, 3, 4], [1, 3, 2, 4])
    0.8
    """
    a, b = _pair(x, y)
    if a.size < 2:
        return float("nan")
    ra, rb = rank_average(a), rank_average(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    if den == 0.0:
        return float("nan")
    return float((ra * rb).sum()) / den


#: statistic name → function (the names used in reports)
STATISTICS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "kendall_tau": kendall_tau, "spearman_rho": spearman_rho}


def bootstrap_interval(x: Sequence[float], y: Sequence[float],
                       statistic: Callable[[Sequence[float], Sequence[float]], float] = kendall_tau, *,
                       resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)``, resampling items (pairs) with replacement.

    Resamples in which the statistic is undefined (all drawn items tied in one ranking) are skipped;
    ``(nan, nan)`` when fewer than two items or no resample is defined. The same ``seed`` gives the
    same interval.

    >>> lo, hi = bootstrap_interval([1, 2, 3, 4, 5], [2, 1, 3, 5, 4], seed=0)
    >>> -1.0 <= lo <= hi <= 1.0
    True
    """
    a, b = _pair(x, y)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    n = a.size
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        v = statistic(a[idx], b[idx])
        if math.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    tail = 0.5 * (1.0 - level)
    lo, hi = np.quantile(np.asarray(values), [tail, 1.0 - tail])
    return float(lo), float(hi)
