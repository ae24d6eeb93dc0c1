"""The spos strategy: child study under budgets, options, supernet training and the end-to-end run."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from archc.cost.model import graph_cost
from archc.search.runner import ModelBuilder, SearchError, make_sampler
from archc.search.space import load_space
from archc.search.strategies.spos import SposOptions
from archc.search.strategies.spos_check import spread
from archc.search.strategies.spos_children import normalized_choice, run_children

from .conftest import ROOT

torch.set_num_threads(1)

#: one searched cell (the low cell of the CDCN++ skeleton) with four ops, small full size and proxy
SMALL = """\
archc: 1
name: small_cells
base: {base}
params: {{img: 32, map_size: 8, stem_width: 16, width: 32, head: [16]}}
cells:
  low: {{nodes: 4, ops: [none, skip, cdc, conv], edges: low_edges, output: low_out, op_table: edge_ops}}
constraints:
  params: {limit}
objectives:
  val_loss: minimize
evaluator:
  task: depth
  data: {{source: digits, train: 64, val: 64, seed: 0}}
  proxy: {{img: 16, map_size: 4, stem_width: 8, width: 8, head: [8]}}
  train: {{epochs: 1, batch_size: 32, optimizer: adam, lr: 0.003, schedule: cosine, seed: 0}}
study:
  sampler: {{name: tpe, seed: 0, n_startup_trials: 4}}
  trials: 6
"""


def small_space(tmp_path: Path, limit: float = 1e9) -> Path:
    p = tmp_path / "small_cells.yaml"
    p.write_text(SMALL.format(base=(ROOT / "specs" / "cdcn_cells.yaml").as_posix(), limit=limit), encoding="utf-8")
    return p


def test_over_budget_children_are_rejected_before_they_are_scored(tmp_path: Path) -> None:
    # the full-size params of children of this cell range from ~94k to ~136k: the budget splits them
    limit = 105_000
    space = load_space(small_space(tmp_path, limit))
    builder = ModelBuilder(space)
    scored: list[dict[str, Any]] = []

    def score(choice: Any) -> dict[str, float]:
        scored.append(dict(choice))
        g = builder.graph(space.materialize(choice).overrides)
        return {"val_loss": 1.0 / graph_cost(g).params, "train_loss": 0.0, "val_acc": 0.5}

    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 0))
    counts = run_children(space, study, score, 6)
    trials = study.get_trials(deepcopy=False)
    rejected = [t for t in trials if t.user_attrs.get("status") == "rejected"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    distinct = [t for t in complete if t.user_attrs["status"] == "complete"]
    assert len(distinct) == 6 and rejected, "the budget should reject some children of this space"
    assert len({t.user_attrs["arch"] for t in distinct}) == 6  # duplicates do not count as scored children
    assert counts["rejected"] == len(rejected) and counts["scored"] == 6
    assert counts["reused"] == len(complete) - 6 and len(scored) == 6
    for t in rejected:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["metrics"]["params"] > limit and "over budget: params" in t.user_attrs["reason"]
        assert "eval_metrics" not in t.user_attrs and "choice" not in t.user_attrs
        assert t.user_attrs["constraints"][1] > 0  # the violation constraint-aware samplers learn from
    for choice in scored:
        assert graph_cost(builder.graph(space.materialize(choice).overrides)).params <= limit
    # a scored child is scored with its normalized cell: dead edges are 'none'
    for t in complete:
        assert t.user_attrs["choice"] == normalized_choice(space, t.user_attrs["choice"])


def test_infeasible_children_never_reach_the_scorer(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path))
    # a seeded sampler and room for infeasible draws: the test must not depend on a lucky second sample
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    dead = {f"low.e{i}_{j}": "none" for i, j in space.cells[0].edges}
    dead["low.out"] = 3
    study.enqueue_trial(dead)
    calls: list[Any] = []
    run_children(space, study, lambda c: calls.append(c) or {"val_loss": 1.0}, 1, max_attempts=50)
    t0 = study.get_trials(deepcopy=False)[0]
    assert t0.user_attrs["status"] == "infeasible" and "no live path" in t0.user_attrs["reason"]
    assert len(calls) == 1 and calls[0] != dead


def test_duplicate_children_reuse_their_scores(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path))
    study = optuna.create_study(directions=space.directions)
    a = {f"low.e{i}_{j}": "none" for i, j in space.cells[0].edges}
    a.update({"low.e0_1": "cdc", "low.out": 1})
    b = dict(a, **{"low.e2_3": "conv"})  # an edge off the path to the output: the same architecture
    study.enqueue_trial(a)
    study.enqueue_trial(b)
    calls: list[Any] = []
    counts = run_children(space, study, lambda c: calls.append(c) or {"val_loss": 0.5}, 2)
    # the duplicate is told to the sampler but not counted: a third child is scored for the second slot
    assert len(calls) == 2 and counts["scored"] == 2 and counts["reused"] >= 1
    t1 = study.get_trials(deepcopy=False)[1]
    assert t1.user_attrs["duplicate_of"] == 0 and t1.user_attrs["status"] == "duplicate"
    assert t1.state == TrialState.COMPLETE and t1.values == [0.5]


def test_options_are_checked() -> None:
    assert SposOptions.from_mapping({"epochs": 2, "topk": None}).epochs == 2
    with pytest.raises(SearchError, match="unknown spos option 'epoch'.*") as e:
        SposOptions.from_mapping({"epoch": 2})
    assert "did you mean 'epochs'" in (e.value.hint or "")
    with pytest.raises(SearchError, match="children must be an integer"):
        SposOptions.from_mapping({"children": 0})
    with pytest.raises(SearchError, match="at least 3 children"):
        SposOptions.from_mapping({"check_proxy": 2})
    with pytest.raises(SearchError, match="lr must be a positive"):
        SposOptions.from_mapping({"lr": 0.0})


def test_spread_picks_the_whole_ranking() -> None:
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread(list(range(3)), 5) == [0, 1, 2]
    assert spread(list(range(7)), 2) == [0, 6]


def test_spaces_without_cells_or_with_unmeasurable_objectives_are_refused(tmp_path: Path) -> None:
    from archc.search.strategies.spos import run_spos

    from .conftest import write_space

    with pytest.raises(SearchError, match="searches cells"):
        run_spos(write_space(tmp_path), out=tmp_path / "run")
    p = small_space(tmp_path)
    p.write_text(p.read_text().replace("val_loss: minimize", "synflow: maximize")
                 .replace("evaluator:\n", "evaluator:\n  zero_cost: {metrics: [synflow]}\n"))
    with pytest.raises(SearchError, match="'synflow' cannot be measured with inherited weights"):
        run_spos(p, out=tmp_path / "run2")


# -------------------------------------------------------------------------------------------------------
# with the supernet
# -------------------------------------------------------------------------------------------------------
def _supernet(tmp_path: Path, seed: int = 0) -> Any:
    from archc.search.supernet import build_supernet

    space = load_space(small_space(tmp_path))
    return space, build_supernet(space, proxy=True, seed=seed)


def _data(space: Any) -> Any:
    from archc.search.data import load_data

    return load_data(space.evaluator.data, "depth", (3, 16, 16), (4, 4))


def test_a_supernet_step_trains_only_the_sampled_path(tmp_path: Path) -> None:
    from archc.search.evaluate import task_loss
    from archc.search.strategies.spos_train import supernet_step

    space, sn = _supernet(tmp_path)
    data = _data(space)
    opt = torch.optim.SGD(sn.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    rng = random.Random(3)
    for step in range(2):
        choice = sn.sample_path(rng)
        before = {n: p.detach().clone() for n, p in sn.model.named_parameters()}
        supernet_step(sn, choice, data.x_train[:16], data.y_train[:16], task_loss("depth"), opt, 5.0)
        got = {n for n, p in sn.model.named_parameters() if p.grad is not None}
        # exactly the child's weights: as many parameters as the compiled child of this path has
        _, child = sn.child(choice)
        assert sum(p.numel() for n, p in sn.model.named_parameters() if n in got) == \
            sum(p.numel() for p in child.parameters())
        assert not any(p.grad is not None for p in sn.arch_parameters())
        moved = {n for n, p in sn.model.named_parameters() if not torch.equal(p.detach(), before[n])}
        assert moved <= got, f"step {step}: weights off the path changed: {sorted(moved - got)[:3]}"
        assert moved, "the path's weights did not change"
    # different paths train different candidate ops
    assert len({json.dumps(sn.sample_path(random.Random(s)), sort_keys=True) for s in range(5)}) > 1


def test_inherited_score_is_the_compiled_childs_score(tmp_path: Path) -> None:
    from archc.search.bn_recal import recalibrate_bn
    from archc.search.evaluate import validate
    from archc.search.strategies.spos_children import ChildScorer, bn_batches

    space, sn = _supernet(tmp_path)
    data = _data(space)
    with torch.no_grad():  # break the symmetry of freshly initialized BN so recalibration matters
        for p in sn.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    recal = bn_batches(data, 2, 16, seed=0)
    scorer = ChildScorer(sn, data, recal)
    choice = sn.sample_path(random.Random(7))
    got = scorer(choice)
    _, child = sn.child(choice)
    recalibrate_bn(child, recal)
    want = validate(child, data)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-7), k
    assert sn.fixed is None  # the scorer leaves the supernet unfixed


def test_supernet_training_resumes_exactly(tmp_path: Path) -> None:
    from archc.search.strategies.spos_train import SupernetTraining, train_supernet

    space, sn = _supernet(tmp_path)
    data = _data(space)
    cfg = SupernetTraining(epochs=2, batch_size=32, seed=1)
    lines: list[str] = []
    full = train_supernet(sn, data, cfg, checkpoint=tmp_path / "full.pt", space_digest="d", say=lines.append)
    assert [e["epoch"] for e in full.epochs] == [1, 2] and len(lines) == 2

    class Stop(Exception):
        pass

    def stop_after_first_epoch(line: str) -> None:
        raise Stop  # as if the process were killed right after epoch 1 was checkpointed

    ck = tmp_path / "part.pt"
    _, sn_a = _supernet(tmp_path)
    with pytest.raises(Stop):
        train_supernet(sn_a, data, cfg, checkpoint=ck, space_digest="d", say=stop_after_first_epoch)
    assert torch.load(ck, weights_only=True)["epoch"] == 1
    _, sn_b = _supernet(tmp_path)  # a fresh process: new supernet, the checkpoint resumes it
    resumed = train_supernet(sn_b, data, cfg, checkpoint=ck, space_digest="d", say=lines.append)
    assert resumed.resumed_from == 1 and "resuming" in lines[2]
    want, got = sn.model.state_dict(), sn_b.model.state_dict()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # a finished checkpoint is loaded, not retrained; another configuration is not resumed at all
    _, sn_c = _supernet(tmp_path)
    assert train_supernet(sn_c, data, cfg, checkpoint=ck, space_digest="d").resumed_from == 2
    _, sn_d = _supernet(tmp_path)
    other = SupernetTraining(epochs=2, batch_size=32, seed=1, lr=0.05)
    assert train_supernet(sn_d, data, other, checkpoint=ck, space_digest="d").resumed_from == 0


# -------------------------------------------------------------------------------------------------------
# end to end
# -------------------------------------------------------------------------------------------------------
def test_cli_spos_end_to_end_resume_and_oneshot_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from archc.cli import main
    from archc.compiler import CompileOptions, compile_spec

    space = small_space(tmp_path, 105_000)
    out = tmp_path / "run"
    args = ["search", str(space), "--strategy", "spos", "--epochs", "2", "--trials", "4", "--set", "topk=2",
            "--set", "bn_batches=1", "--out", str(out)]
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "spos: supernet epoch 2/2: train_loss" in cap.err and "spos: child 4/4" in cap.err
    assert "spos: top 2: child #" in cap.err and "→ retrained" in cap.err
    assert "derived" in cap.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["children"]["scored"] == 4 and len(summary["topk"]) == 2
    assert all("val_loss" in r["retrained"] and "val_loss" in r["inherited"] for r in summary["topk"])
    best = summary["best"]
    assert best["by"] == "retrained val_loss"
    assert best["value"] == min(r["retrained"]["val_loss"] for r in summary["topk"])
    # the derived spec compiles and is the best retrained child
    derived = out / "derived.yaml"
    text = derived.read_text()
    assert f"trial {best['trial']}" in text.splitlines()[0]
    res = compile_spec(str(derived), CompileOptions())
    assert res.graph is not None and res.cost.params <= 105_000
    rows = (out / "children.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,status,val_loss") and len(rows) >= 5
    # rerunning resumes: the supernet checkpoint is complete and no child is scored twice;
    # with --check-proxy it adds the one-shot check over the scored children
    assert main(args + ["--check-proxy", "3", "--seeds", "1", "--metric", "val_auc"]) == 0
    cap = capsys.readouterr()
    assert "nothing to train" in cap.err and "spos: child " not in cap.err
    check = json.loads((out / "proxy_check.json").read_text())
    assert check["kind"] == "oneshot" and check["k"] == 3 and check["seeds"] == 1
    assert len(check["children"]) == 3 and check["metric"] == "val_auc"
    for r in check["children"]:
        assert 0.0 <= r["inherited"] <= 1.0 and all(0.0 <= v <= 1.0 for v in r["standalone"])
    assert "inherited vs stand-alone over 3 children: kendall_tau" in cap.err
    ranks = [r["inherited_rank"] for r in check["children"]]
    assert ranks == sorted(ranks) and ranks[0] == 1  # spread over the ranking, best first
    # the top-k stand-alone results were reused, not retrained (seed 0 is the evaluator's seed)
    assert cap.err.count("retraining child") == 3 - len({r["trial"] for r in summary["topk"]} &
                                                         {r["trial"] for r in check["children"]})


def test_cli_spos_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from archc.cli import main

    space = small_space(tmp_path)
    base = ["search", str(space), "--strategy", "spos", "--out", str(tmp_path / "r")]
    assert main(base + ["--set", "epoch=2"]) == 1
    err = capsys.readouterr().err
    assert "unknown spos option 'epoch'" in err and "did you mean 'epochs'" in err and "Traceback" not in err
    assert main(base + ["--long-epochs", "5"]) == 1
    assert "--check-proxy K compares inherited and stand-alone scores" in capsys.readouterr().err
    assert main(base + ["--set", "check_proxy=2"]) == 1
    assert "at least 3 children" in capsys.readouterr().err
    assert main(base + ["--check-proxy", "3", "--metric", "latency_ms"]) == 1
    assert "cannot rank by 'latency_ms'" in capsys.readouterr().err
    # an invalid option in the space file points at its line
    space.write_text(space.read_text() + "strategy:\n  spos: {children: 0}\n")
    assert main(base) == 1
    err = capsys.readouterr().err
    assert f"{space}:" in err and "children must be an integer" in err


def test_over_budget_everywhere_exits_non_zero_with_outputs_explained(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from archc.cli import main

    space = small_space(tmp_path, 1_000)  # no child fits
    space.write_text(space.read_text().replace("trials: 6", "trials: 6\n  max_attempts: 5"))
    rc = main(["search", str(space), "--strategy", "spos", "--epochs", "1", "--trials", "2", "--out",
               str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and "no child of" in err and "5 over budget" in err and "Traceback" not in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_spos_runs_on_the_gpu(tmp_path: Path) -> None:
    from archc.search.strategies.spos import run_spos

    res = run_spos(small_space(tmp_path), SposOptions(epochs=1, children=2, topk=1, bn_batches=1, device="cuda"),
                   out=tmp_path / "run")
    assert res.supernet["device"].startswith("cuda")
    assert res.files["derived"].exists() and res.topk[0]["retrained"]["val_loss"] > 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_children_left_running_by_a_dead_process_are_failed_on_resume(tmp_path: Path) -> None:
    import subprocess

    from archc.search.runner import make_storage
    from archc.search.strategies.spos import _open_study
    from archc.search.trial import host

    space = load_space(small_space(tmp_path))
    storage, _ = make_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=storage, directions=space.directions)
    proc = subprocess.Popen(["true"])  # a finished process: its pid names no live process
    proc.wait()
    t_dead = study.ask()
    t_dead.set_user_attr("worker", f"{host()}:{proc.pid}")
    t_live = study.ask()
    t_live.set_user_attr("worker", f"{host()}:1")  # pid 1 is alive
    study.set_user_attr("supernet_digest", "x")
    again, _ = _open_study(space, tmp_path, None, "s", 0, "x", lambda s: None)
    states = {t.number: t.state for t in again.get_trials(deepcopy=False)}
    assert states[t_dead.number] == TrialState.FAIL and states[t_live.number] == TrialState.RUNNING
    with pytest.raises(SearchError, match="scored its children with another supernet"):
        _open_study(space, tmp_path, None, "s", 0, "y", lambda s: None)


def test_multi_objective_confirms_the_pareto_front_first(tmp_path: Path) -> None:
    from archc.search.strategies.spos import run_spos

    p = small_space(tmp_path)
    p.write_text(p.read_text().replace("val_loss: minimize", "val_loss: minimize\n  params: minimize")
                 .replace("sampler: {name: tpe, seed: 0, n_startup_trials: 4}", "sampler: {name: nsga2, seed: 0}"))
    res = run_spos(p, SposOptions(epochs=1, children=6, topk=2, bn_batches=1), out=tmp_path / "run")
    from archc.search.export import pareto_trials

    front = {t.number for t in pareto_trials(res.study)}
    assert {r["trial"] for r in res.topk} <= front or front <= {r["trial"] for r in res.topk}
    assert res.files["derived"].exists() and res.best["trial"] in {r["trial"] for r in res.topk}
    header = (tmp_path / "run" / "children.csv").read_text().splitlines()[0]
    assert header.startswith("number,state,status,val_loss,params")


def test_supernet_digest_ignores_edits_that_do_not_change_scores(tmp_path: Path) -> None:
    from archc.search.strategies.spos import supernet_digest

    p = small_space(tmp_path)
    text = p.read_text()
    d0 = supernet_digest(load_space(p))
    same = [text.replace("archc: 1\n", "archc: 1\ndoc: more words\n"),           # docs, shifted lines
            text.replace("params: 1000000000", "params: 100000"),                # constraints
            text.replace("trials: 6", "trials: 9"),                             # study settings
            text.replace("epochs: 1, batch_size: 32", "epochs: 2, batch_size: 32")]  # retraining budget
    for t in same:
        assert supernet_digest(load_space(p, t)) == d0
    other = [text.replace("[none, skip, cdc, conv]", "[none, skip, conv]"),         # the cells
             text.replace("width: 8, head", "width: 4, head"),                   # the proxy
             text.replace("train: 64, val: 64", "train: 32, val: 64")]           # the data
    for t in other:
        assert supernet_digest(load_space(p, t)) != d0


def test_a_child_whose_score_is_not_finite_fails_and_the_search_goes_on(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path))
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    calls = iter([{"val_loss": float("nan")}] + [{"val_loss": 0.1 * i} for i in range(1, 50)])
    counts = run_children(space, study, lambda c: next(calls), 2)
    failed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    assert counts["failed"] == 1 and counts["scored"] == 2 and len(failed) == 1
    assert "inherited-weight val_loss is nan" in failed[0].user_attrs["reason"]
    # a missing objective fails the child too (not a half-told trial)
    study2 = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(SearchError, match="10 children in a row failed.*objective val_loss is None"):
        run_children(space, study2, lambda c: {"val_acc": 0.5}, 1)


def test_an_interrupted_child_search_leaves_no_running_child_and_resumes(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path))
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    n = {"calls": 0}

    def score(choice: Any) -> dict[str, float]:
        n["calls"] += 1
        if n["calls"] == 2:
            raise KeyboardInterrupt
        return {"val_loss": 1.0 / n["calls"]}

    with pytest.raises(KeyboardInterrupt):
        run_children(space, study, score, 3)
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert sum(t.user_attrs.get("status") == "complete" for t in study.get_trials(deepcopy=False)) == 1
    counts = run_children(space, study, score, 3)  # the same call again finishes the job
    assert counts["scored"] == 2
    assert sum(t.user_attrs.get("status") == "complete" for t in study.get_trials(deepcopy=False)) == 3


def test_timeout_stops_asking_for_children(tmp_path: Path) -> None:
    space = load_space(small_space(tmp_path))
    study = optuna.create_study(directions=space.directions)
    counts = run_children(space, study, lambda c: {"val_loss": 0.5}, 50, timeout=0.0)
    assert counts["stopped"] == "timeout after 0 s" and counts["attempts"] == 0
