"""Model scaling: grow (or shrink) a spec to a MAC target along depth, width, group width and resolution.

A spec says which of its params are depths, widths, group widths and the input resolution in a
``scaling:`` section (see ``docs/scaling.md``)::

    scaling:
      depth: depths                                  # int or list-of-int params: scaled and rounded by archc
      width: [stem, widths, head]
      group_width: {param: group_width, divides: dims}   # after rounding, dims are made multiples of it
      resolution: img
      rounding: {depth: 1, width: 8, group_width: 8, resolution: 4}   # optional; these are the defaults
      rule: fast                                     # optional default rule of 'archc scale'

or names multiplier params that the spec applies (and rounds) itself: ``width: {multiplier: width_mult}``.

A *rule* says how a MAC ratio ``s`` is split over the dimensions, as exponents: depth × s^e_d, width
× s^e_w, group width × s^e_g, resolution × s^e_r with e_d + 2·e_w + 2·e_r = 1 (MACs ∝ d·w²·r²).
Rules are pycls scale types ``d{a}_w{b}_g{c}_r{e}`` (e_d = a/S, e_w = b/2S, e_g = c/2S, e_r = e/2S with
S = a + b + e), letter forms (``d``, ``w``, ``r``, ``dw``, ``dwr`` …: weight 1 each), ``fast`` (= ``dWr``
= ``d1_w8_g8_r1``, α = 0.8; ``fast:A`` for another α), ``dW`` (``d2_w8_g8``) and ``efficientnet``
(d = α^φ, w = β^φ, r = γ^φ with α, β, γ = 1.2, 1.1, 1.15, or ``efficientnet:A,B,G``; φ = ln s / ln αβ²γ²).

pycls scales by the target then rounds; rounding (and the parts of a network whose MACs are not ∝
d·w²·r²: stem, head, depthwise convs, the classifier) moves the achieved MACs off the target. By
default :func:`scale` therefore searches the scale factor ``s'`` handed to the rule (the rule's
direction is unchanged) until the rounded model's MACs bracket the target as tightly as the rounding
allows, keeps the closer side, then trims the width (and resolution) factor by at most ±5% where that
gets closer; ``calibrate="none"`` is pycls's plain scale-then-round.

``python -m archc.scaling --report`` regenerates the tables and the plot in ``docs/scaling.md``.

The package: :mod:`~archc.scaling.rounding` (pycls's rounding), :mod:`~archc.scaling.rules` (the rule
grammar), :mod:`~archc.scaling.decl` (the ``scaling:`` section), :mod:`~archc.scaling.scaler`
(:func:`scale` and its calibration), :mod:`~archc.scaling.write` (scaled specs on disk),
:mod:`~archc.scaling.report` (the console table) and :mod:`~archc.scaling.study` (the docs' study).
"""

from __future__ import annotations

from archc.scaling.decl import SCALING_KEYS, ScalingDecl, Target, check_values, load_scaling, scaled_values
from archc.scaling.report import fit_exponent, format_results
from archc.scaling.rounding import (
    DEFAULT_ROUNDING,
    DIMS,
    ROUNDERS,
    make_compatible,
    round_depth,
    round_group_width,
    round_resolution,
    round_width,
)
from archc.scaling.rules import NAMED_RULES, Rule, parse_flops, parse_rule, phi_targets
from archc.scaling.scaler import CALIBRATIONS, TRIM_LIMIT, ScaleResult, scale
from archc.scaling.study import REPORT_BASES, REPORT_FLOPS, REPORT_RULES, main, run_study, study_markdown, study_svg
from archc.scaling.write import output_paths, write_scaled

__all__ = [
    "DIMS", "DEFAULT_ROUNDING", "NAMED_RULES", "Rule", "Target", "ScalingDecl", "ScaleResult",
    "round_depth", "round_width", "round_group_width", "round_resolution", "make_compatible",
    "parse_rule", "parse_flops", "phi_targets", "load_scaling", "check_values", "scaled_values", "scale",
    "write_scaled", "output_paths", "format_results", "fit_exponent", "run_study", "main",
    "SCALING_KEYS", "ROUNDERS", "CALIBRATIONS", "TRIM_LIMIT", "REPORT_BASES", "REPORT_RULES", "REPORT_FLOPS",
    "study_markdown", "study_svg",
]
