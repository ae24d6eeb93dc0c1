"""The quantization error report: SQNR of every quantized layer and of the model output, and why a layer is bad.

SQNR (signal-to-quantization-noise ratio) of a quantized tensor ``xq`` against its float value ``x``,
summed over every calibration input::

    SQNR = 10 · log10( Σ x² / Σ (x − xq)² )   dB            (∞ when the two are equal)

Two numbers per layer:

* ``sqnr`` — the layer's output in the quantized model against the float model: every error upstream
  is in it (what the next layer sees).
* ``own_sqnr`` — the layer alone: float inputs, its int8 weights, its output quantized to its
  calibrated grid. Error upstream is not in it, so it names the layer to blame; ``--min-sqnr`` and
  the threshold of the report use it.

A layer below the threshold is named with its likely reason, from the statistics gathered beside:
outlier output channels (max / median of the per-channel output ranges), a weight channel with a few
large weights (weight SQNR under per-channel int8), or an activation range set by rare values
(max |x| / 99.99th percentile of |x|).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["LayerStat", "QuantReport", "sqnr_db", "SqnrMeter", "channel_ratio", "weight_sqnr", "REPORT_THRESHOLD"]

#: layers whose own SQNR is under this many dB are named in the report (``--min-sqnr`` replaces it)
REPORT_THRESHOLD = 25.0
#: a ratio of channel ranges (max / median) above this counts as outlier channels
OUTLIER_CHANNEL_RATIO = 8.0
#: max |x| over the 99.99th percentile of |x| above this counts as an activation range set by rare values
OUTLIER_VALUE_RATIO = 4.0


def sqnr_db(signal: float, noise: float) -> float:
    """``10·log10(signal / noise)``; ∞ for no noise, −∞ for no signal with noise."""
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


class SqnrMeter:
    """Running Σx² and Σ(x − xq)² of one tensor over several batches."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0

    def add(self, ref: Any, got: Any) -> None:
        a = np.asarray(ref, dtype=np.float64)
        b = np.asarray(got, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        self.signal += float(np.sum(a * a))
        self.noise += float(np.sum((a - b) ** 2))

    @property
    def db(self) -> float:
        return sqnr_db(self.signal, self.noise)


def channel_ratio(lo: np.ndarray, hi: np.ndarray) -> float:
    """max / median of per-channel ranges (hi − lo); 1 for a single channel, inf when the median range is 0."""
    r = np.asarray(hi, np.float64) - np.asarray(lo, np.float64)
    if r.size < 2:
        return 1.0
    med = float(np.median(r))
    return float(r.max()) / med if med > 0 else (math.inf if r.max() > 0 else 1.0)


def weight_sqnr(w: np.ndarray, axis: int = 0) -> float:
    """SQNR of ``w`` under symmetric per-channel int8 along ``axis`` (scale = max|w_c| / 127)."""
    w = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    wq = np.clip(np.round(w / scale), -127, 127) * scale
    return sqnr_db(float(np.sum(w * w)), float(np.sum((w - wq) ** 2)))


@dataclass
class LayerStat:
    """What the report says about one quantized layer."""

    name: str
    op: str
    #: MACs per sample (0 for ops without weights)
    macs: int
    sqnr: float
    own_sqnr: float | None
    #: the node (ONNX) or module (PyTorch) name in the artifact
    node: str = ""
    #: the calibrated range of the layer's output
    out_range: tuple[float, float] | None = None
    #: max / median of per-channel output ranges
    out_channel_ratio: float | None = None
    #: max |x| over the 99.99th percentile of |x| of the output
    out_value_ratio: float | None = None
    #: max / median of per-channel weight ranges, and the weight SQNR under per-channel int8
    weight_channel_ratio: float | None = None
    weight_sqnr: float | None = None
    float_kept: bool = False
    reason: str = ""

    def explain(self) -> str:
        """The likely reason of a low SQNR, from the statistics (strongest first)."""
        reasons = []
        if self.out_channel_ratio is not None and self.out_channel_ratio >= OUTLIER_CHANNEL_RATIO:
            w = (f", weights {self.weight_channel_ratio:.1f}" if self.weight_channel_ratio is not None else "")
            reasons.append(f"outlier channels: max/median channel range of the output {self.out_channel_ratio:.1f}{w}")
        if self.weight_sqnr is not None and self.weight_sqnr < 30.0:
            reasons.append(f"weight range: per-channel int8 weights reach only {self.weight_sqnr:.1f} dB")
        if self.out_value_ratio is not None and self.out_value_ratio >= OUTLIER_VALUE_RATIO:
            reasons.append(f"activation range set by rare values: max|x| is {self.out_value_ratio:.1f}x the 99.99th percentile")
        if not reasons and self.out_range is not None:
            lo, hi = self.out_range
            reasons.append(f"activation range [{lo:.3g}, {hi:.3g}] in 256 steps of {(hi - lo) / 255:.3g}")
        return "; ".join(reasons) or "no statistic explains it"


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if v == math.inf else f"{v:.1f}"


def _json_num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return [_json_num(x) for x in v]
    return v


@dataclass
class QuantReport:
    """The whole report: per-layer statistics, the model output's SQNR, the mixed-precision cost."""

    target: str
    backend: str
    method: str
    calibration: str
    threshold: float
    layers: list[LayerStat]
    #: model output SQNR of the artifact against the float model on the calibration data
    model_sqnr: float
    #: the same with every layer in int8 (equal to model_sqnr when nothing stays float)
    all_int8_sqnr: float
    total_macs: int
    float_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kernels: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def float_macs(self) -> int:
        return sum(s.macs for s in self.layers if s.float_kept)

    @property
    def below(self) -> list[LayerStat]:
        """Layers whose own SQNR is under the threshold, worst first."""
        bad = [s for s in self.layers if s.own_sqnr is not None and s.own_sqnr < self.threshold]
        return sorted(bad, key=lambda s: s.own_sqnr)  # type: ignore[arg-type,return-value]

    def to_json(self) -> str:
        """The report as JSON (∞ written as the string "inf")."""
        doc = {
            "target": self.target, "backend": self.backend, "calibration_method": self.method,
            "calibration": self.calibration, "threshold_db": self.threshold,
            "model_output_sqnr_db": _json_num(self.model_sqnr), "all_int8_model_output_sqnr_db": _json_num(self.all_int8_sqnr),
            "sqnr_gained_db": _json_num(self.model_sqnr - self.all_int8_sqnr) if self.float_layers else 0.0,
            "total_macs": self.total_macs, "float_macs": self.float_macs,
            "float_macs_fraction": self.float_macs / self.total_macs if self.total_macs else 0.0,
            "float_layers": self.float_layers,
            "below_threshold": [{"name": s.name, "own_sqnr_db": _json_num(s.own_sqnr), "reason": s.reason} for s in self.below],
            "kernels": self.kernels, "notes": self.notes, **self.extra,
            "layers": [{k: _json_num(v) for k, v in asdict(s).items()} for s in self.layers],
        }
        return json.dumps(doc, indent=2) + "\n"

    def table(self, limit: int | None = None) -> str:
        """The per-layer table (worst own SQNR first when ``limit`` cuts it) and the summary lines."""
        rows = self.layers
        if limit is not None and len(rows) > limit:
            rows = sorted(rows, key=lambda s: math.inf if s.own_sqnr is None else s.own_sqnr)[:limit]
        name_w = max([len("layer"), *(len(s.name) for s in rows)])
        lines = [f"  {'layer':{name_w}s}  {'op':10s} {'MACs':>10s} {'SQNR dB':>8s} {'own dB':>7s}  note"]
        for s in rows:
            below = s.own_sqnr is not None and s.own_sqnr < self.threshold
            note = ("kept float" + (f": {s.reason}" if s.reason else "")) if s.float_kept else (s.reason if below else "")
            lines.append(f"  {s.name:{name_w}s}  {s.op:10s} {s.macs:>10,d} {_fmt_db(s.sqnr):>8s} {_fmt_db(s.own_sqnr):>7s}  {note}")
        if limit is not None and len(self.layers) > limit:
            lines.append(f"  ... {len(self.layers) - limit} more layer(s) in the JSON report")
        lines.append(f"  model output SQNR {_fmt_db(self.model_sqnr)} dB ({self.backend}, {self.method} calibration)")
        if self.float_layers:
            frac = self.float_macs / self.total_macs if self.total_macs else 0.0
            lines.append(f"  kept float: {len(self.float_layers)} layer(s), {self.float_macs:,d} of {self.total_macs:,d} MACs "
                         f"({100 * frac:.1f}%); model output SQNR {_fmt_db(self.all_int8_sqnr)} dB all-int8 -> "
                         f"{_fmt_db(self.model_sqnr)} dB ({self.model_sqnr - self.all_int8_sqnr:+.1f} dB)")
        bad = [s for s in self.below if not s.float_kept]
        if bad:
            lines.append(f"  {len(bad)} layer(s) under {self.threshold:g} dB own SQNR: "
                         + ", ".join(f"{s.name} ({_fmt_db(s.own_sqnr)} dB)" for s in bad[:5])
                         + (" ..." if len(bad) > 5 else ""))
        return "\n".join(lines)
