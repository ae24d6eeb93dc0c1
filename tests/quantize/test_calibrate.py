"""Calibration ranges (minmax, percentile, mse), the fake-quant grid, SQNR and the calibration inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archc.quantize.calibrate import (
    PERCENTILE,
    QuantizeError,
    RangeCollector,
    calibration_data,
    compute_range,
    fake_quant_uint8,
)
from archc.quantize.report import channel_ratio, sqnr_db, weight_sqnr


def _heavy_tailed(n: int = 200_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    x[:5] = [60.0, -55.0, 48.0, 70.0, -66.0]  # a few rare, huge values
    return x


def test_minmax_is_the_extremes_and_contains_zero() -> None:
    c = RangeCollector()
    c.add(np.array([0.5, 2.0, 3.0], np.float32))
    c.add(np.array([1.0, 4.0], np.float32))
    assert c.range("minmax") == (0.0, 4.0)  # zero kept in range so padding and ReLU zeros are exact


def test_percentile_clips_rare_values() -> None:
    x = _heavy_tailed()
    lo, hi = compute_range(x, float(x.min()), float(x.max()), "percentile")
    q_lo, q_hi = np.quantile(x.astype(np.float64), [1 - PERCENTILE, PERCENTILE])
    assert (lo, hi) == pytest.approx((q_lo, q_hi))
    assert hi < 10.0 and lo > -10.0


def test_mse_range_has_least_error_of_the_three() -> None:
    x = _heavy_tailed()
    errs = {}
    for method in ("minmax", "percentile", "mse"):
        lo, hi = compute_range(x, float(x.min()), float(x.max()), method)
        errs[method] = float(np.mean((fake_quant_uint8(x, lo, hi) - x) ** 2))
    assert errs["mse"] < errs["minmax"]
    # the searched range is a clipped min/max range: no wider, strictly narrower on these tails
    lo, hi = compute_range(x, float(x.min()), float(x.max()), "mse")
    assert hi < float(x.max())


def test_fake_quant_grid_is_exact_on_grid_points() -> None:
    lo, hi = -1.0, 3.0
    scale = (hi - lo) / 255
    zp = round(-lo / scale)
    grid = (np.arange(256) - zp) * scale
    assert np.allclose(fake_quant_uint8(grid, lo, hi), grid)
    assert fake_quant_uint8(np.array([100.0]), lo, hi)[0] == pytest.approx((255 - zp) * scale)  # clipped


def test_sqnr_and_channel_statistics() -> None:
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    assert sqnr_db(1.0, 0.0) == math.inf
    assert channel_ratio(np.zeros(4), np.array([1.0, 1.0, 1.0, 50.0])) == pytest.approx(50.0)
    w = np.random.default_rng(1).standard_normal((8, 4, 3, 3))
    assert 35.0 < weight_sqnr(w) < 50.0  # per-channel int8 of Gaussian weights


def test_unknown_method_is_refused() -> None:
    with pytest.raises(QuantizeError, match="unknown calibration method 'l2'"):
        compute_range(np.ones(3, np.float32), 0.0, 1.0, "l2")


def test_calibration_inputs_need_a_source_or_random() -> None:
    with pytest.raises(QuantizeError, match="--calib DATA .* or --calib-random"):
        calibration_data(None, False, (1, 8, 8), 2)
    rnd = calibration_data(None, True, (1, 8, 8), 3, batch_size=4)
    assert rnd.samples == 12 and rnd.batches[0].shape == (4, 1, 8, 8)
    again = calibration_data(None, True, (1, 8, 8), 3, batch_size=4)
    assert all((a == b).all() for a, b in zip(rnd.batches, again.batches))  # seeded


def test_digits_calibration_and_bad_path(tmp_path) -> None:  # noqa: ANN001
    digits = calibration_data("digits", False, (1, 8, 8), 2, batch_size=8)
    assert digits.samples == 16 and "digits" in digits.description
    with pytest.raises(QuantizeError, match="--calib: data source .*nope.* does not exist"):
        calibration_data(str(tmp_path / "nope"), False, (1, 8, 8), 2)
