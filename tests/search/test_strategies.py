"""Strategy registry, options (space file and command line), darts/pcdarts end to end through the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.search.space import load_space
from archc.search.strategies import STRATEGIES, Strategy, get_strategy, register, resolve_options
from archc.search.strategies.darts import DartsOptions, run_darts
from archc.search.strategies.pcdarts import PcdartsOptions

from .conftest import ROOT, write_space

torch.set_num_threads(1)

SMALL = """\
archc: 1
name: small_cells
base: {base}
cells:
  low: {{nodes: 4, ops: [none, skip, cdc, conv], edges: low_edges, output: low_out, op_table: edge_ops}}
constraints: {{params: 5.0e6}}
objectives: {{val_loss: minimize}}
evaluator:
  task: depth
  data: {{source: digits, train: 64, val: 64, seed: 0}}
  proxy: {{img: 16, map_size: 4, stem_width: 8, width: 8, head: [8]}}
  train: {{epochs: 1, batch_size: 32, optimizer: adam, lr: 0.003}}
strategy:
{strategy}
"""


def small_space(tmp_path: Path, strategy: str = "  darts: {epochs: 2, max_batches: 1}") -> Path:
    text = SMALL.format(base=(ROOT / "specs" / "cdcn_cells.yaml").as_posix(), strategy=strategy)
    p = tmp_path / "small.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_registry_is_explicit_and_loud() -> None:
    assert set(STRATEGIES) >= {"sample", "darts", "pcdarts", "spos"}
    assert get_strategy("darts").options_class() is DartsOptions
    with pytest.raises(ValueError, match="registered twice"):
        register(Strategy("darts", "x", "run", None, "again"))
    with pytest.raises(Exception, match="did you mean 'pcdarts'"):
        get_strategy("pcdart")


def test_options_layer_defaults_space_file_and_command_line(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path, "  pcdarts: {epochs: 7, arch_lr: 0.001}"))
    opts = resolve_options("pcdarts", space, {"epochs": 3})
    assert isinstance(opts, PcdartsOptions)
    assert (opts.epochs, opts.arch_lr, opts.partial_channels, opts.warmup) == (3, 0.001, 4, 0.3)
    d = resolve_options("darts", space)
    assert (d.partial_channels, d.arch_lr, d.warmup) == (1, 3e-4, 0.0)


def test_strategy_data_is_what_the_one_shot_strategies_train_on(tmp_path: Path) -> None:
    """'strategy: {data: ...}' replaces the evaluator's data for the supernet; trials keep the evaluator's."""
    p = small_space(tmp_path, "  data: {source: digits, train: 48, val: 40, seed: 1}\n  darts: {epochs: 1, max_batches: 1}")
    space = load_space(p)
    assert (space.evaluator.data.train, space.evaluator.data.val) == (64, 64)
    one = space.for_oneshot()
    assert (one.evaluator.data.train, one.evaluator.data.val, one.evaluator.data.seed) == (48, 40, 1)
    assert one.evaluator.train == space.evaluator.train and one.cells == space.cells
    lines: list[str] = []
    run_darts(space, None, out=tmp_path / "run", log=lines.append)
    assert any("(48 train for the weights / 40 val for α/β)" in line for line in lines), lines
    assert load_space(small_space(tmp_path)).for_oneshot().evaluator.data.train == 64  # no 'data': the evaluator's


@pytest.mark.parametrize("body, message", [
    ("  data: {source: digits, trian: 48}", "did you mean 'train'"),
    ("  data: 3", "'data'"),
    ("  darts: 3", "options of strategy 'darts' must be a mapping"),
    ("  darts: {epochs: [1, 2]}", "option 'epochs' of strategy 'darts' must be a single value"),
    ("  pcdarst: {epochs: 1}", "did you mean 'pcdarts'"),
])
def test_strategy_section_errors_have_positions(tmp_path: Path, body: str, message: str) -> None:
    from archc.diagnostics import SearchSpaceError

    p = small_space(tmp_path, body)
    with pytest.raises(SearchSpaceError) as exc:
        load_space(p)
    line = len(p.read_text().splitlines())
    assert message in exc.value.render() and exc.value.loc.line == line


def test_bad_strategy_options_point_at_the_space_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = small_space(tmp_path, "  darts: {epochs: 0}")
    assert main(["search", str(p), "--strategy", "darts", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"{p}:" in err and "epochs" in err and "Traceback" not in err
    line = next(n for n, text in enumerate(p.read_text().splitlines(), 1) if "epochs: 0" in text)
    assert f"{p}:{line}:" in err
    p = small_space(tmp_path, "  dart: {epochs: 1}")
    assert main(["search", str(p), "--strategy", "darts"]) == 1
    assert "unknown strategy 'dart'" in capsys.readouterr().err
    p = small_space(tmp_path, "  sample: {trials: 3}")
    assert main(["search", str(p)]) == 1
    assert "strategy 'sample' takes no options" in capsys.readouterr().err
    p = small_space(tmp_path)
    assert main(["search", str(p), "--strategy", "darts", "--set", "ordr=2"]) == 1
    assert "did you mean 'order'" in capsys.readouterr().err
    assert main(["search", str(p), "--strategy", "darts", "--storage", "x.db"]) == 1
    assert "--storage does not apply to --strategy darts" in capsys.readouterr().err
    assert main(["search", str(p), "--strategy", "nope"]) == 1
    assert "unknown search strategy 'nope'" in capsys.readouterr().err
    assert main(["search", str(p), "--epochs", "2"]) == 1
    assert "apply to the one-shot strategies" in capsys.readouterr().err
    assert main(["search", str(write_space(tmp_path)), "--strategy", "darts"]) == 1
    assert "has none" in capsys.readouterr().err


def test_darts_from_the_command_line_writes_a_compilable_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = small_space(tmp_path)
    out = tmp_path / "run"
    assert main(["search", str(p), "--strategy", "darts", "--out", str(out), "--seed", "1"]) == 0
    cap = capsys.readouterr()
    assert "darts: epoch 2/2" in cap.err and "α argmax low:" in cap.err and "train_loss" in cap.err
    assert "derived" in cap.out
    for name in ("derived.yaml", "alpha.csv", "alpha.svg", "history.json", "summary.json", "supernet.py", "supernet.pt"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "alpha.csv").open()))
    edges = [r for r in rows if r["edge"] != "beta"]
    assert len(edges) == 10 and all(abs(sum(float(r[o]) for o in ("none", "skip", "cdc", "conv")) - 1) < 1e-5
                                    for r in edges)
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and all(math.isfinite(h["val_loss"]) for h in hist)
    summary = json.loads((out / "summary.json").read_text())
    space = load_space(p)
    assert space.materialize(summary["derived"]).reason is None
    assert summary["cost_full_size"]["params"] > 0
    assert main(["compile", str(out / "derived.yaml"), "-o", str(tmp_path / "derived.py")]) == 0
    # the derived spec is the derived architecture: compiling it equals materializing the choice
    from archc.search.runner import ModelBuilder

    graph = ModelBuilder(space).graph(space.materialize(summary["derived"]).overrides)
    n_params = sum(p.numel() for p in ModelBuilder(space).module(graph).parameters())
    assert f"{n_params:,}" in capsys.readouterr().out


def test_second_order_and_partial_channels_run(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path))
    res = run_darts(space, DartsOptions(epochs=1, max_batches=1, order=2, seed=0), out=tmp_path / "so")
    rec = res.history[0]
    assert math.isfinite(rec.train_loss) and rec.arch_loss is not None and math.isfinite(rec.arch_loss)
    res = run_darts(space, {"epochs": 2, "max_batches": 1, "partial_channels": 4, "warmup": 0.5}, out=tmp_path / "pc")
    assert [h.arch_frozen for h in res.history] == [True, False]
    assert any("edge_beta" in row for row in res.history[-1].alpha)


def test_second_order_gradient_matches_the_exact_unrolled_gradient(tmp_path: Path) -> None:
    from archc.search.strategies.bilevel import _second_order
    from archc.search.supernet import build_supernet
    from archc.train.losses import task_loss

    from .test_strategies_planted import planted_space

    space = load_space(planted_space(tmp_path))
    sn = build_supernet(space, dtype=torch.float64, seed=0)
    model = sn.model.train()
    gen = torch.Generator().manual_seed(0)
    xt, xv = (torch.randn(8, 1, 8, 8, dtype=torch.float64, generator=gen) for _ in range(2))
    yt, yv = (torch.randn(8, 8, 8, dtype=torch.float64, generator=gen) for _ in range(2))
    loss_fn = task_loss("depth")
    opts = DartsOptions(order=2)
    ws, arch = sn.weight_parameters(), sn.arch_parameters()
    opt = torch.optim.SGD(ws, lr=0.1, momentum=0.9, weight_decay=opts.weight_decay)
    xi = 0.1
    # exact: L_val(w − ξ(∇L_train(w, α) + wd·w), α) differentiated through the virtual step
    g = torch.autograd.grad(loss_fn(model(xt), yt), ws, create_graph=True)
    unrolled = [w - xi * (gw + opts.weight_decay * w) for w, gw in zip(ws, g)]
    saved = [w.detach().clone() for w in ws]
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if any(p is w for w in ws)]
    val = loss_fn(functional_call(model, dict(zip(names, unrolled)), (xv,)), yv)
    exact = torch.autograd.grad(val, arch, retain_graph=True)
    # the direct term alone (no Hessian-vector product): what the test must be able to tell apart
    direct = torch.autograd.grad(loss_fn(functional_call(model, {n: u.detach() for n, u in zip(names, unrolled)}, (xv,)),
                                         yv), arch)
    with torch.no_grad():
        for w, s in zip(ws, saved):
            w.copy_(s)
    for a in arch:
        a.grad = None
    _second_order(sn, loss_fn, opt, xt, yt, xv, yv, xi, opts)
    for a, e, d in zip(arch, exact, direct):
        if not bool(e.any()):  # β of a one-node cell: softmax over one value has no gradient
            assert not bool(a.grad.any())
            continue
        hvp = float((e - d).abs().max())  # the size of the second-order term
        assert hvp > 1e-3 * float(e.abs().max())
        # central finite differences with a weight step of 0.01 (DARTS): a few percent of the term
        assert float((a.grad - e).abs().max()) <= 0.05 * hvp, (float((a.grad - e).abs().max()), hvp)
    assert all(torch.equal(w, s) for w, s in zip(ws, saved))  # the weights are restored


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_supernet_and_darts_run_on_cuda(tmp_path: Path) -> None:
    import random

    from archc.search.supernet import build_supernet

    space = load_space(small_space(tmp_path))
    res = run_darts(space, {"epochs": 1, "max_batches": 2, "device": "cuda"}, out=tmp_path / "cuda")
    assert math.isfinite(res.history[0].train_loss) and res.options.device == "cuda"
    sn = build_supernet(space, dtype=torch.float64)
    sn.model.cuda().eval()
    choice = sn.sample_path(random.Random(0))
    _, child = sn.child(choice)
    child.cuda().eval()
    sn.fix(choice)
    x = torch.randn(2, *sn.input_shape[1:], dtype=torch.float64, device="cuda")
    with torch.no_grad():
        want, got = child(x), sn.model(x)
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-12
