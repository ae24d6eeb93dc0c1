"""How far a bf16 / fp16 model is from the float32 eager module: the measurements behind DTYPE_TOLERANCES.

Run from the repository root::

    python benchmarks/bench_precision.py                  # every bundled spec small, three models at 224
    python benchmarks/bench_precision.py --full-only --json

For each spec the deploy module is built twice with the same weights — once as archc's artifacts
check it (``create_model()`` under seed 0), once with every weight perturbed and random BN statistics
(:func:`archc.passes.equivalence.randomize`) — and run on a seeded input in float32 and after
``.to(dtype)`` with the input converted (eager PyTorch, CPU). Reported: the max relative error
``max|a − b| / max|a|`` per spec and dtype, and the largest over all, against
:data:`archc.precision.DTYPE_TOLERANCES`. The "small" rows shrink each spec to one block per stage at
64 pixels (what the target tests compile); the "224" rows are RepVGG-A0, ResNet-50 and ConvNeXt-atto
at full size. A dtype with a missing kernel for a spec is reported as such, not as an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.compiler import CompileOptions  # noqa: E402
from archc.diagnostics import ArchcError  # noqa: E402
from archc.passes.equivalence import randomize  # noqa: E402
from archc.precision import DTYPE_TOLERANCES, DTYPES  # noqa: E402
from archc.spec.document import load_spec_doc, resolve_params  # noqa: E402
from archc.targets import max_rel_error, prepare  # noqa: E402

FULL = [("specs/repvgg.yaml", "a0"), ("specs/resnet.yaml", "resnet50"), ("specs/convnext.yaml", "atto")]


def small_params(spec: Path, img: int = 64) -> list[str]:
    """One block per stage and ``img`` pixels, where the spec has such params."""
    _, env = resolve_params(load_spec_doc(spec), None, [])
    out = []
    for name in ("depths", "depth", "layers"):
        v = env.get(name)
        if isinstance(v, list) and all(isinstance(d, int) for d in v):
            out.append(f"{name}=[{','.join(str(min(d, 1)) for d in v)}]")
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(f"{name}=1")
    if "img" in env:
        out.append(f"img={img}")
    return out


def errors(spec: Path, variant: str | None, params: list[str]) -> dict[str, Any]:
    prep = prepare(spec, CompileOptions(variant=variant, params=params, pipeline="deploy", check=False))
    row: dict[str, Any] = {"spec": spec.stem + (f"-{variant}" if variant else ""), "input": list(prep.shapes[0])}
    for weights in ("init", "random"):
        model = prep.factory(False)().eval()
        if weights == "random":
            model.load_state_dict(randomize(model, seed=3))
        xs = prep.inputs
        with torch.no_grad():
            ref = model(*xs)
        for name in ("bf16", "fp16"):
            dtype = DTYPES[name]
            low = prep.factory(False)().eval()
            low.load_state_dict(model.state_dict())
            low = low.to(dtype)
            try:
                with torch.no_grad():
                    got = low(*[x.to(dtype) for x in xs])
                row[f"{name} {weights}"] = max_rel_error(ref, got)
            except (RuntimeError, NotImplementedError) as exc:
                row[f"{name} {weights}"] = f"no kernel ({str(exc).splitlines()[0][:60]})"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full-only", action="store_true", help="only the three models at 224")
    ap.add_argument("--small-only", action="store_true", help="only the bundled specs at their small test size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    if not args.full_only:
        for spec in sorted((ROOT / "specs").glob("*.yaml")):
            try:
                rows.append({"size": "small", **errors(spec, None, small_params(spec))})
            except ArchcError as exc:  # a spec that does not compile is named, not measured
                print(f"  {spec.stem}: not compiled ({str(exc).splitlines()[0][:120]})", file=sys.stderr)
    if not args.small_only:
        for spec, variant in FULL:
            rows.append({"size": "224", **errors(ROOT / spec, variant, [])})
    worst = {d: max((v for r in rows for k, v in r.items() if k.startswith(d) and isinstance(v, float)), default=0.0)
             for d in ("bf16", "fp16")}
    if args.json:
        print(json.dumps({"rows": rows, "worst": worst, "tolerances": DTYPE_TOLERANCES}, indent=1))
        return 0
    cols = ["bf16 init", "bf16 random", "fp16 init", "fp16 random"]
    print(f"  {'spec':22s} {'size':5s} " + " ".join(f"{c:>12s}" for c in cols))
    for r in rows:
        cells = [f"{r[c]:12.1e}" if isinstance(r[c], float) else f"{'no kernel':>12s}" for c in cols]
        print(f"  {r['spec']:22s} {r['size']:5s} " + " ".join(cells))
    for d in ("bf16", "fp16"):
        print(f"  worst {d}: {worst[d]:.1e}  (accepted: {DTYPE_TOLERANCES[d]:.0e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
