"""Supernet search throughput: archc's generated supernet and bi-level loop against a hand-written DARTS.

Run from the repository root::

    python benchmarks/bench_supernet.py                      # the CDC space, batch 32, 5 rounds
    python benchmarks/bench_supernet.py --steps 4 --rounds 8 --threads 2
    python benchmarks/bench_supernet.py --json > supernet.json

Both sides search the same space (``search_spaces/cdc.yaml`` at its proxy size: three cells of four
nodes, ten edges of seven ops plus ``none`` each) on the same data (the space's bundled proxy data) with
the same optimizers (weights SGD momentum 0.9, wd 3e-4, grad clip 5; α/β Adam 3e-4, betas (0.5, 0.999),
wd 1e-3), first order, all channels (DARTS):

* **archc**: :func:`archc.search.supernet.build_supernet` (the generated module) trained by
  :func:`archc.search.strategies.bilevel.train_bilevel`, one epoch of ``--steps`` steps per round, which
  includes what the strategy does after each epoch (validation with the mixed forward, discretization,
  the α table).
* **plain**: a hand-written DARTS in the style of the DARTS / PC-DARTS reference code: ``MixedOp`` as
  ``sum(w * op(x) for ...)`` over an ``nn.ModuleDict``, cells looping over their nodes, the ops
  written out by hand (CDC conv, BN, ReLU as in the CDCN code), the same loop (α step on a validation
  batch, weight step on a training batch) and the same validation pass per epoch.

Before timing, the plain network is loaded with the archc supernet's weights and α/β and both forwards
are compared (float32, eval mode; the max relative error must stay below ``--tol``): the two compute
the same function. Timing: after a warm-up round, each round runs one epoch of each, alternating which
goes first, so load drifts hit both alike. Reported: median seconds per epoch of each, ``ratio`` =
median(plain) / median(archc) (≥ 1: archc is at least as fast; the target is ≥ 0.9), the median of the
per-round ratios, and the same ratio over process CPU time (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.search.evaluate import ProxyEvaluator  # noqa: E402
from archc.search.runner import ModelBuilder  # noqa: E402
from archc.search.space import load_space  # noqa: E402
from archc.search.strategies.bilevel import BilevelOptions, train_bilevel  # noqa: E402
from archc.search.supernet import build_supernet  # noqa: E402
from archc.search.supernet.codegen import op_slug  # noqa: E402
from archc.train.losses import task_loss  # noqa: E402
from archc.train.metrics import validate  # noqa: E402


# ---------------------------------------------------------------------------------------------------------
# the hand-written DARTS (what one would write without archc)
# ---------------------------------------------------------------------------------------------------------
class CDC(nn.Conv2d):
    """Central difference conv (CDCN): conv(x, w) − θ·conv1x1(x, Σ_hw w)."""

    def __init__(self, cin: int, cout: int, theta: float) -> None:
        super().__init__(cin, cout, 3, padding=1, bias=False)
        self.theta = theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight, None, padding=1)
        if self.theta == 0:
            return out
        return out - self.theta * F.conv2d(x, self.weight.sum(dim=(2, 3), keepdim=True))


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, theta: float) -> None:
        super().__init__()
        if theta > 0:
            self.conv = CDC(cin, cout, theta)
        else:
            self.vconv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x) if hasattr(self, "conv") else self.vconv(x)
        return F.relu(self.bn(x))


class EdgeOp(nn.Module):
    """One op of the CDCN++ op table row [convs, r, θ]: skip, CDC-BN-ReLU or CDC_2_r."""

    def __init__(self, row: list[Any], cin: int, c: int) -> None:
        super().__init__()
        convs, r, theta = int(row[0]), float(row[1]), float(row[2])
        self.convs = convs
        if convs >= 1:
            mid = c if convs == 1 else int(c * r)
            self.c1 = ConvBNReLU(cin, mid, theta)
            if convs == 2:
                self.c2 = ConvBNReLU(mid, c, theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convs == 0:
            return x
        x = self.c1(x)
        return self.c2(x) if self.convs == 2 else x


class MixedOp(nn.Module):
    def __init__(self, ops: dict[str, list[Any]], names: list[str], cin: int, c: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({op_slug(n): EdgeOp(ops[n], cin, c) for n in names if n != "none"})
        self.index = [names.index(n) for n in names if n != "none"]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return sum(w[k] * op(x) for k, op in zip(self.index, self.ops.values()))


class Cell(nn.Module):
    def __init__(self, ops: dict[str, list[Any]], names: list[str], nodes: int, cin: int, c: int) -> None:
        super().__init__()
        self.nodes = nodes
        self.pairs = [(i, j) for j in range(1, nodes + 1) for i in range(j)]
        self.edges = nn.ModuleList(MixedOp(ops, names, cin if i == 0 else c, c) for i, _ in self.pairs)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(self.pairs), len(names)))
        self.beta = nn.Parameter(1e-3 * torch.randn(nodes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.softmax(self.alpha, dim=-1)
        states = [x]
        for j in range(1, self.nodes + 1):
            states.append(sum(self.edges[k](states[i], w[k]) for k, (i, jj) in enumerate(self.pairs) if jj == j))
        b = F.softmax(self.beta, dim=-1)
        out = sum(b[j - 1] * states[j] for j in range(1, self.nodes + 1))
        return F.max_pool2d(out, 3, stride=2, padding=1)


class SpatialAttention(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(a))


class Fuse(nn.Module):
    def __init__(self, k: int, size: int) -> None:
        super().__init__()
        self.sa = SpatialAttention(k)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.sa(x), size=[self.size, self.size], mode="bilinear", align_corners=False)


class PlainDarts(nn.Module):
    """CDCN++ search network written by hand (stem, three mixed cells, MAFM, depth head)."""

    def __init__(self, p: dict[str, Any], names: list[str], nodes: int) -> None:
        super().__init__()
        theta, w, sw = p["theta"], p["width"], p["stem_width"]
        self.stem = ConvBNReLU(3, sw, theta)
        self.low = Cell(p["edge_ops"], names, nodes, sw, w)
        self.mid = Cell(p["edge_ops"], names, nodes, w, w)
        self.high = Cell(p["edge_ops"], names, nodes, w, w)
        ks = p["sa_kernels"]
        self.f_low, self.f_mid, self.f_high = (Fuse(k, p["map_size"]) for k in ks)
        head, prev = [], 3 * w
        for c in p["head"]:
            head.append(ConvBNReLU(prev, c, theta))
            prev = c
        self.lastconv = nn.Sequential(*head)
        self.depth_conv = CDC(prev, 1, theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        low = self.low(x)
        mid = self.mid(low)
        high = self.high(mid)
        x = torch.cat([self.f_low(low), self.f_mid(mid), self.f_high(high)], 1)
        return F.relu(self.depth_conv(self.lastconv(x)))[:, 0]


def plain_key(key: str, cells: dict[str, list[tuple[int, int]]]) -> str:
    """The archc supernet key of a plain-DARTS state_dict key."""
    m = re.match(r"^(\w+)\.edges\.(\d+)\.ops\.(\w+?)\.(.*)$", key)
    if m:
        i, j = cells[m.group(1)][int(m.group(2))]
        return f"{m.group(1)}.e{i}_{j}_{m.group(3)}.{m.group(4)}"
    return key


def plain_loop(model: PlainDarts, data: Any, opts: BilevelOptions, bs: int, steps: int, gen: torch.Generator) -> float:
    """One epoch of the plain first-order DARTS loop with its validation pass; returns the train loss."""
    loss_fn = task_loss(data.task)
    arch = [p for n, p in model.named_parameters() if n.endswith(("alpha", "beta"))]
    ws = [p for n, p in model.named_parameters() if not n.endswith(("alpha", "beta"))]
    if not hasattr(model, "_opt"):
        model._opt = torch.optim.SGD(ws, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
        model._aopt = torch.optim.Adam(arch, lr=opts.arch_lr, betas=(opts.arch_beta1, opts.arch_beta2),
                                       weight_decay=opts.arch_weight_decay)
    opt, aopt = model._opt, model._aopt
    model.train()
    perm = torch.randperm(data.sizes[0], generator=gen)
    vperm = torch.randperm(data.sizes[1], generator=gen)
    total = 0.0
    for s in range(steps):
        idx, vidx = perm[s * bs:(s + 1) * bs], vperm[s * bs:(s + 1) * bs]
        aopt.zero_grad()
        loss_fn(model(data.x_val[vidx]), data.y_val[vidx]).backward()
        aopt.step()
        opt.zero_grad()
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        nn.utils.clip_grad_norm_(ws, opts.grad_clip)
        opt.step()
        total += float(loss.detach())
    validate(model, data, batch_size=max(bs, 256), loss_fn=loss_fn)
    return total / steps


# ---------------------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------------------
def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "cdc.yaml"))
    ap.add_argument("--steps", type=int, default=3, help="bi-level steps per epoch (default 3)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    ap.add_argument("--val", type=int, default=128, help="validation samples (default 128)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative error of the equivalence check")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    space = load_space(args.space).for_oneshot()  # the data the one-shot strategies train on
    torch.manual_seed(0)
    sn = build_supernet(space, seed=0)
    graph = ModelBuilder(space).graph(space.materialize(sn.sample_path(random.Random(0))).proxy_overrides())
    data = ProxyEvaluator(space.evaluator).data(tuple(graph.inputs["x"].concrete(1)), tuple(graph.output_types[0].concrete(1)))
    data = dataclasses.replace(data, x_val=data.x_val[:args.val], y_val=data.y_val[:args.val],
                               live_val=None if data.live_val is None else data.live_val[:args.val])
    params = dict(graph.meta["params"])
    cell0 = space.cells[0]
    plain = PlainDarts(params, list(cell0.ops), cell0.nodes)
    pairs = {c.name: c.edges for c in space.cells}
    src = sn.model.state_dict()
    plain.load_state_dict({k: src[plain_key(k, pairs)] for k in plain.state_dict()}, strict=True)
    x = data.x_val[:4]
    sn.model.eval()
    plain.eval()
    with torch.no_grad():
        a, b = sn.model(x), plain(x)
    err = float((a - b).abs().max() / b.abs().max())
    if not err <= args.tol:
        print(f"equivalence check failed: max relative error {err:.3g} > {args.tol:g}", file=sys.stderr)
        return 1

    opts = BilevelOptions(epochs=1, max_batches=args.steps, lr=0.025, arch_lr=3e-4)
    gen = torch.Generator().manual_seed(0)

    def run_archc() -> None:
        train_bilevel(sn, data, opts, args.batch, 0, torch.device("cpu"), lambda s: None)

    def run_plain() -> None:
        plain_loop(plain, data, opts, args.batch, args.steps, gen)

    run_archc()  # warm-up
    run_plain()
    times: dict[str, list[tuple[float, float]]] = {"archc": [], "plain": []}
    for r in range(args.rounds):
        order = [("archc", run_archc), ("plain", run_plain)]
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            w0, c0 = _clock()
            fn()
            w1, c1 = _clock()
            times[name].append((w1 - w0, c1 - c0))
    med = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    per_round = [p[0] / a_[0] for a_, p in zip(times["archc"], times["plain"])]
    res = {
        "space": space.path, "steps": args.steps, "batch": args.batch, "rounds": args.rounds, "threads": args.threads,
        "equivalence_rel_err": err, "median_s": med, "cpu_s": cpu,
        "ratio": med["plain"] / med["archc"], "ratio_per_round_median": statistics.median(per_round),
        "ratio_per_round_min_max": [min(per_round), max(per_round)], "cpu_ratio": cpu["plain"] / cpu["archc"],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"supernet search throughput, {Path(space.path).name} at the proxy size, {args.steps} bi-level steps of "
          f"batch {args.batch} + validation of {args.val} per epoch, {args.threads} thread(s); equivalence: max rel err "
          f"{err:.2g}")
    print(f"{'':8s} {'s/epoch':>9s} {'cpu s':>9s}")
    for k in ("archc", "plain"):
        print(f"{k:8s} {med[k]:9.3f} {cpu[k]:9.3f}")
    lo, hi = res["ratio_per_round_min_max"]
    print(f"ratio plain/archc: {res['ratio']:.3f} (per-round median {res['ratio_per_round_median']:.3f}, "
          f"range {lo:.3f}–{hi:.3f}; CPU-time ratio {res['cpu_ratio']:.3f}); ≥ 1 means archc is at least as fast")
    return 0 if math.isfinite(res["ratio"]) else 1


if __name__ == "__main__":
    sys.exit(main())
