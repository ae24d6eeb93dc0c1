"""The scaling study behind ``docs/scaling.md``: every base scaled with every rule to every target, the
generated tables and the activation plot; ``python -m archc.scaling --report`` reruns it."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError
from archc.scaling.report import fit_exponent, si
from archc.scaling.rules import parse_flops
from archc.scaling.scaler import scale

__all__ = ["REPORT_BASES", "REPORT_RULES", "REPORT_FLOPS", "run_study", "study_markdown", "study_svg", "main"]


#: bases of the study: (spec file under specs/, variant, label)
REPORT_BASES = (("efficientnet", "b0", "EfficientNet-B0"), ("regnet", "x400mf", "RegNetX-400MF"),
                ("resnet", "resnet50", "ResNet-50"), ("convfirst", "t", "ConvFirst-T"))
#: rules of the study and the activation exponent the papers report (None: not stated there)
REPORT_RULES = (("fast", 0.6), ("dW", None), ("dwr", None), ("efficientnet", 0.85), ("w", 0.5), ("d", 1.0), ("r", 1.0))
REPORT_FLOPS = (2.0, 4.0, 8.0, 16.0)
_BEGIN = "<!-- BEGIN GENERATED: python -m archc.scaling --report -->"
_END = "<!-- END GENERATED -->"
_COLORS = {"fast": "#d62728", "dW": "#ff7f0e", "dwr": "#8c564b", "efficientnet": "#9467bd", "w": "#1f77b4",
           "d": "#2ca02c", "r": "#17becf"}


def _study_job(job: tuple[str, str | None, str, tuple[float, ...]]) -> list[dict[str, Any]]:
    spec, variant, rule, flops = job
    rows = []
    for calib in ("trim", "none"):
        for r in scale(spec, list(flops), rule, variant=variant, calibrate=calib):
            rows.append({"calibrate": calib, "target": r.target, "mac_ratio": r.mac_ratio, "act_ratio": r.act_ratio,
                         "error": r.error, "step": r.step, "factor": r.factor, "trim": list(r.trim),
                         "macs": r.cost.macs, "params": r.cost.params, "acts": r.cost.acts, "values": r.values,
                         "ideal": r.rule.act_exponent, "canonical": r.rule.canonical})
    return rows


def run_study(specs_dir: str | Path, bases: Sequence[tuple[str, str, str]] = REPORT_BASES,
              rules: Sequence[tuple[str, float | None]] = REPORT_RULES, flops: Sequence[float] = REPORT_FLOPS,
              jobs: int = 1) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Scale every base with every rule to every target (calibrated and pycls-plain); results by (base, rule)."""
    work = [(str(Path(specs_dir) / f"{b}.yaml"), v, r, tuple(flops)) for b, v, _ in bases for r, _ in rules]
    keys = [(label, r) for _, _, label in bases for r, _ in rules]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            out = list(pool.map(_study_job, work))
    else:
        out = [_study_job(w) for w in work]
    return dict(zip(keys, out))


def _fmt_pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


def study_markdown(study: Mapping[tuple[str, str], list[dict[str, Any]]], bases: Sequence[tuple[str, str, str]],
                   rules: Sequence[tuple[str, float | None]], flops: Sequence[float], plot: str | None) -> str:
    """The generated part of docs/scaling.md: exponent table, MAC errors, per-target details."""
    labels = [lb for _, _, lb in bases]
    lines = [_BEGIN, "",
             f"Targets S = {', '.join(f'{s:g}' for s in flops)}; MACs and activations in archc's default convention "
             "(activations = conv, linear and pooling outputs, as pycls); default calibration (`trim`).", "",
             "#### Fitted activation exponents", "",
             "Least-squares slope of log(activation ratio) on log(achieved MAC ratio), through the base. *Ideal* is "
             "e_d + e_w + 2·e_r, what activations ∝ d·w·r² would give if every layer scaled alike.", "",
             "| rule | " + " | ".join(labels) + " | ideal | paper |",
             "|---|" + "---:|" * (len(labels) + 2)]
    for rule, paper in rules:
        cells = []
        ideal = math.nan
        for lb in labels:
            rows = [x for x in study[(lb, rule)] if x["calibrate"] == "trim"]
            ideal = rows[0]["ideal"]
            cells.append(f"{fit_exponent([x['mac_ratio'] for x in rows], [x['act_ratio'] for x in rows]):.3f}")
        canon = study[(labels[0], rule)][0]["canonical"]
        name = f"`{rule}`" + (f" ({canon})" if canon != rule else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ideal:.3f} | {f'≈ {paper:g}' if paper else '–'} |")
    lines += ["", "#### MAC error against the target", "",
              "Worst |achieved/target − 1| over the targets: *archc* is `archc scale` (scale-factor search, then a "
              "width/resolution trim of at most ±5%); *pycls* is scale-then-round at s' = S. *bound* is the largest "
              "gap between the nearest achievable MAC ratios below and above a target that the search found "
              "(the rounding error: archc's error is at most half of it).", "",
              "| rule | " + " | ".join(f"{lb} archc / pycls / bound" for lb in labels) + " |",
              "|---|" + "---:|" * len(labels)]
    worst_all = (0.0, "")
    for rule, _ in rules:
        cells = []
        for lb in labels:
            rows = study[(lb, rule)]
            cal = [x for x in rows if x["calibrate"] == "trim"]
            plain = [x for x in rows if x["calibrate"] == "none"]
            w = max(abs(x["error"]) for x in cal)
            worst = max(cal, key=lambda x: abs(x["error"]))
            if w > worst_all[0]:
                worst_all = (w, f"{lb}, `{rule}`, S = {worst['target']:g}: {_fmt_pct(worst['error'])}")
            bound = max(x["step"] for x in cal)
            cells.append(f"{100 * w:.2f}% / {100 * max(abs(x['error']) for x in plain):.2f}% / "
                         + (f"{100 * bound:.1f}%" if math.isfinite(bound) else "–"))
        lines.append(f"| `{rule}` | " + " | ".join(cells) + " |")
    lines += ["", f"Worst case over all bases, rules and targets: **{100 * worst_all[0]:.2f}%** ({worst_all[1]}).", ""]
    if plot:
        lines += [f"![activation ratio against MAC ratio, log-log]({plot})", ""]
    lines += ["<details><summary>Every scaled model</summary>", ""]
    for b, v, lb in bases:
        lines += [f"**{lb}** (`specs/{b}.yaml`, {v})", "",
                  "| rule | S | achieved | error | pycls error | bound | acts ratio | s' | trim | MACs | params |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for rule, _ in rules:
            rows = study[(lb, rule)]
            plain = {x["target"]: x for x in rows if x["calibrate"] == "none"}
            for x in (x for x in rows if x["calibrate"] == "trim"):
                trim = ", ".join(f"{d} ×{c:.3f}" for d, c in x["trim"]) or "–"
                lines.append(f"| `{rule}` | {x['target']:g} | {x['mac_ratio']:.4f} | {_fmt_pct(x['error'])} | "
                             f"{_fmt_pct(plain[x['target']]['error'])} | "
                             f"{100 * x['step']:.2f}% | {x['act_ratio']:.3f} | {x['factor']:.3f} | {trim} | "
                             f"{si(x['macs'])} | {si(x['params'])} |")
        lines.append("")
    lines += ["</details>", "", _END]
    return "\n".join(lines)


def study_svg(study: Mapping[tuple[str, str], list[dict[str, Any]]], bases: Sequence[tuple[str, str, str]],
              rules: Sequence[tuple[str, float | None]]) -> str:
    """A hand-written SVG: activation ratio against MAC ratio (log-log), one panel per base."""
    pw, ph, ml, mt, mb = 300, 250, 48, 28, 40
    cols = 2
    nrows = (len(bases) + cols - 1) // cols
    legend_h = 30
    width, height = cols * (pw + ml) + 20, nrows * (ph + mt + mb) + legend_h
    xmax = max(x["mac_ratio"] for rows in study.values() for x in rows)
    ymax = max(max(x["act_ratio"] for rows in study.values() for x in rows), xmax)
    lx, ly = math.log(max(xmax, 2) * 1.1), math.log(max(ymax, 2) * 1.1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for k, (_, _, lb) in enumerate(bases):
        ox = (k % cols) * (pw + ml) + ml
        oy = (k // cols) * (ph + mt + mb) + mt + legend_h

        def px(v: float, ox: float = ox) -> float:
            return ox + pw * math.log(v) / lx

        def py(v: float, oy: float = oy) -> float:
            return oy + ph - ph * math.log(v) / ly

        out.append(f'<text x="{ox + pw / 2}" y="{oy - 8}" text-anchor="middle" font-weight="bold">{lb}</text>')
        out.append(f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for t in (1, 2, 4, 8, 16, 32, 64, 128):
            if t <= xmax * 1.1:
                out.append(f'<line x1="{px(t):.1f}" y1="{oy}" x2="{px(t):.1f}" y2="{oy + ph}" stroke="#eee"/>')
                out.append(f'<text x="{px(t):.1f}" y="{oy + ph + 14}" text-anchor="middle">{t}</text>')
            if t <= ymax * 1.1:
                out.append(f'<line x1="{ox}" y1="{py(t):.1f}" x2="{ox + pw}" y2="{py(t):.1f}" stroke="#eee"/>')
                out.append(f'<text x="{ox - 5}" y="{py(t) + 4:.1f}" text-anchor="end">{t}</text>')
        out.append(f'<text x="{ox + pw / 2}" y="{oy + ph + 30}" text-anchor="middle">MAC ratio</text>')
        out.append(f'<text x="{ox - 34}" y="{oy + ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {ox - 34} {oy + ph / 2})">activation ratio</text>')
        for e in (0.5, 1.0):  # reference slopes
            x2 = min(xmax * 1.1, (ymax * 1.1) ** (1 / e))
            out.append(f'<line x1="{px(1):.1f}" y1="{py(1):.1f}" x2="{px(x2):.1f}" y2="{py(x2 ** e):.1f}" '
                       f'stroke="#999" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{px(x2) - 4:.1f}" y="{py(x2 ** e) - 4:.1f}" text-anchor="end" fill="#777">'
                       f's^{e:g}</text>')
        for rule, _ in rules:
            rows = [x for x in study[(lb, rule)] if x["calibrate"] == "trim"]
            pts = [(1.0, 1.0)] + [(x["mac_ratio"], x["act_ratio"]) for x in rows]
            color = _COLORS.get(rule, "#333")
            path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
            out += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.6" fill="{color}"/>' for a, b in pts[1:]]
    x = ml
    for rule, _ in rules:
        color = _COLORS.get(rule, "#333")
        out.append(f'<line x1="{x}" y1="14" x2="{x + 18}" y2="14" stroke="{color}" stroke-width="2.5"/>')
        out.append(f'<text x="{x + 22}" y="18">{rule}</text>')
        x += 30 + 7 * len(rule) + 14
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m archc.scaling --report``: run the scaling study and rewrite its part of docs/scaling.md."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m archc.scaling", description=main.__doc__)
    ap.add_argument("--report", action="store_true", help="run the study and write the docs")
    ap.add_argument("--docs", default=None, help="docs folder (default: docs/ of this checkout)")
    ap.add_argument("--specs", default=None, help="specs folder (default: specs/ of this checkout)")
    ap.add_argument("--flops", default=",".join(f"{s:g}" for s in REPORT_FLOPS), help="targets (default 2,4,8,16)")
    ap.add_argument("--bases", default=None, help="comma-separated spec names to include (default: all)")
    ap.add_argument("--rules", default=None, help="comma-separated rules to include (default: all)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    args = ap.parse_args(argv)
    if not args.report:
        ap.print_help()
        return 0
    here = Path(__file__).resolve().parents[2]  # the checkout: archc/scaling/study.py
    docs = Path(args.docs) if args.docs else here / "docs"
    specs = Path(args.specs) if args.specs else here / "specs"
    bases = [b for b in REPORT_BASES if not args.bases or b[0] in args.bases.split(",")]
    rules = [r for r in REPORT_RULES if not args.rules or r[0] in args.rules.split(",")]
    flops = parse_flops(args.flops)
    try:
        study = run_study(specs, bases, rules, flops, jobs=args.jobs)
    except ArchcError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    svg = docs / "scaling_activations.svg"
    svg.write_text(study_svg(study, bases, rules), encoding="utf-8")
    md = docs / "scaling.md"
    generated = study_markdown(study, bases, rules, flops, svg.name)
    old = md.read_text(encoding="utf-8") if md.exists() else f"# Model scaling\n\n{_BEGIN}\n{_END}\n"
    if _BEGIN not in old or _END not in old:
        old = old.rstrip() + f"\n\n{_BEGIN}\n{_END}\n"
    head, rest = old.split(_BEGIN, 1)
    tail = rest.split(_END, 1)[1]
    md.write_text(head + generated + tail, encoding="utf-8")
    print(generated.split("<details>")[0].replace(_BEGIN, "").strip())
    print(f"wrote {md} and {svg}")
    return 0
