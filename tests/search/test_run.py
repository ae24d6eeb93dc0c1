"""Running studies: resume, determinism, dedup, budgets, pruning, failures, interrupts, outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from archc.cli import main
from archc.compiler import CompileOptions, compile_spec
from archc.search import load_space, run_search
from archc.search.runner import SearchError

from .conftest import ROOT, CountingEvaluator, write_space


def _states(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _load(out: Path, name: str) -> Any:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.log")))
    return optuna.load_study(study_name=name, storage=storage)


def test_real_training_outputs_and_resume(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    out = tmp_path / "run"
    res = run_search(space, out=out, trials=3, progress=False)
    assert res.completed == 3 and res.trained >= 1
    study = _load(out, "tiny_space")  # optuna.load_study opens the journal in the run folder
    assert _states(study).get("COMPLETE") == 3
    t0 = study.get_trials(states=(TrialState.COMPLETE,))[0]
    assert 0.0 <= t0.values[0] <= 1.0 and t0.user_attrs["metrics"]["params"] > 0
    for name in ("trials.csv", "pareto.csv", "summary.json", "best.yaml"):
        assert (out / name).exists(), name
    assert (out / "pareto.svg").exists() or (out / "pareto.png").exists()
    assert sorted(p.name for p in (out / "logs").iterdir()) == [f"trial_{t.number:05d}.log" for t in study.trials]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == len(study.trials) and {"number", "state", "val_acc", "params", "p.width"} <= set(rows[0])
    # the best spec compiles as it is, and is the best trial's architecture
    best = res.best
    c = compile_spec(out / "best.yaml", CompileOptions())
    assert c.cost.params == best.user_attrs["metrics"]["params"]
    # resume: nothing more to do, no trial re-run
    n = len(study.trials)
    before = [(t.number, t.state, t.values, t.datetime_complete) for t in study.trials]
    res2 = run_search(space, out=out, trials=3, progress=False)
    assert res2.new_trials == 0 and len(_load(out, "tiny_space").trials) == n
    # asking for more runs only the missing ones; the earlier trials are untouched
    res3 = run_search(space, out=out, trials=5, progress=False)
    study = _load(out, "tiny_space")
    # duplicates (metrics reused from an identical architecture) do not count toward the target
    assert res3.completed == 5 and sum(1 for t in study.trials if t.user_attrs.get("status") == "complete") == 5
    assert [(t.number, t.state, t.values, t.datetime_complete) for t in study.trials[:n]] == before
    assert res3.new_trials == len(study.trials) - n >= 2


def test_same_seed_same_architectures(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 64, step: 4}}
          depth: {{type: int, low: 1, high: 3}}
          kernel: [1, 3, 5]
          act: {{type: op, values: [relu, gelu, silu]}}
        objectives: {{params: minimize}}
        study: {{sampler: {{name: tpe, n_startup_trials: 3}}, trials: 8}}
        """)

    def sampled(seed: int, tag: str) -> list[dict[str, Any]]:
        res = run_search(space, out=tmp_path / tag, seed=seed, progress=False, outputs=False)
        return [t.params for t in sorted(res.study.trials, key=lambda t: t.number)]

    a, b, c = sampled(7, "a"), sampled(7, "b"), sampled(8, "c")
    assert a == b and len(a) == 8
    assert a != c


def test_duplicates_are_not_trained_twice(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          unused: [0, 1, 2]
          width: [4, 8, 12]
        points:
          p0: {{unused: 0, width: 4}}
          p1: {{unused: 1, width: 4}}
          p2: {{unused: 2, width: 4}}
          p3: {{unused: 0, width: 8}}
        objectives: {{val_acc: maximize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
        study: {{enqueue: [p0, p1, p2, p3], sampler: {{name: random, seed: 0}}, trials: 2}}
        """)
    ev = CountingEvaluator()
    res = run_search(space, out=tmp_path / "run", evaluator=ev, progress=False)
    trials = sorted(res.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    # duplicates reuse the metrics and do not count toward the 2 trials asked for: 2 trained, 2 reused
    assert len(trials) == 4 and len(ev.calls) == 2 and res.completed == 2
    assert [t.user_attrs.get("duplicate_of") for t in trials] == [None, 0, 0, None]
    assert [t.user_attrs["status"] for t in trials] == ["complete", "duplicate", "duplicate", "complete"]
    assert len({t.values[0] for t in trials[:3]}) == 1 and len({t.user_attrs["arch"] for t in trials[:3]}) == 1
    assert res.reused == 2 and res.trained == 2
    # a new run (fresh cache) finds the metrics in the storage: only the third architecture is trained
    ev2 = CountingEvaluator()
    res2 = run_search(space, out=tmp_path / "run", evaluator=ev2, trials=3, progress=False)
    assert len(ev2.calls) == 1 and res2.completed == 3
    new = [t for t in res2.study.trials if t.number >= 4 and t.state == TrialState.COMPLETE]
    assert all(t.user_attrs["duplicate_of"] in (0, 3) for t in new if t.user_attrs["status"] == "duplicate")
    assert res2.reused == sum(1 for t in new if t.user_attrs["status"] == "duplicate")


def test_no_over_budget_architecture_is_ever_built_or_trained(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 64, step: 4}}
          depth: {{type: int, low: 1, high: 3}}
        constraints: {{params: 2000, macs: 60000}}
        objectives: {{val_acc: maximize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
        study: {{sampler: {{name: random, seed: 3}}, trials: 6}}
        """)
    ev = CountingEvaluator()
    res = run_search(space, out=tmp_path / "run", evaluator=ev, progress=False)
    trials = res.study.trials
    rejected = [t for t in trials if t.user_attrs.get("status") == "rejected"]
    assert rejected, "the budget should reject some samples"
    trained = {c["trial"] for c in ev.calls}
    for t in rejected:
        assert t.state == TrialState.PRUNED and t.user_attrs["reason"].startswith("over budget: ")
        assert t.number not in trained
        m = t.user_attrs["metrics"]
        assert m["params"] > 2000 or m["macs"] > 60000
    for c in ev.calls:
        t = trials[c["trial"]]
        assert t.user_attrs["metrics"]["params"] <= 2000 and t.user_attrs["metrics"]["macs"] <= 60000
        assert c["params"] <= 2000  # the model handed to the evaluator is within budget
    assert res.completed == 6
    # the sampler sees rejected samples as infeasible
    assert all(t.constraints and max(t.constraints.values()) > 0 for t in rejected)


def test_pruning_stops_training_early(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: [4, 8]
        objectives: {{val_loss: minimize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 3}}}}
        study: {{pruner: {{name: threshold, upper: 0.0}}, trials: 1, max_attempts: 2}}
        """)
    res = run_search(space, out=tmp_path / "run", progress=False)
    trials = res.study.trials
    assert len(trials) == 2 and res.completed == 0 and "max_attempts" in res.stopped
    for t in trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["status"] == "pruned" and "pruned by the threshold pruner after epoch 1" in t.user_attrs["reason"]
        assert t.user_attrs["epochs_done"] == 1 and list(t.intermediate_values) == [0]


def test_failing_and_nan_architectures_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          boom: [false, true]
          width: [4, 8]
          kernel: [1, 3]
        points:
          nan: {{boom: true, width: 4, kernel: 3}}
          raises: {{boom: false, width: 8, kernel: 1}}
          ok1: {{boom: false, width: 4, kernel: 1}}
          ok2: {{boom: false, width: 4, kernel: 3}}
        objectives: {{val_loss: minimize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
        study: {{enqueue: [nan, raises, ok1, ok2], sampler: {{name: random, seed: 0}}, trials: 2}}
        """)
    from archc.search import ProxyEvaluator

    class Flaky(ProxyEvaluator):
        """Real proxy training, except that one architecture raises inside its forward pass."""

        def evaluate(self, model: Any, ctx: Any) -> dict[str, float]:
            if ctx.number == 1:
                def bad_forward(*args: Any) -> Any:
                    raise RuntimeError("shape mismatch in a custom op")
                model.forward = bad_forward
            return super().evaluate(model, ctx)

    res = run_search(space, out=tmp_path / "run", progress=False, evaluator=Flaky(load_space(space).evaluator))
    t0, t1 = res.study.trials[:2]
    # boom=true overflows the logits: the training loss is NaN
    assert t0.state == TrialState.FAIL and "training loss is nan" in t0.user_attrs["reason"]
    assert t1.state == TrialState.FAIL and t1.user_attrs["reason"] == "RuntimeError: shape mismatch in a custom op"
    assert "Traceback" in (tmp_path / "run" / "logs" / "trial_00001.log").read_text()
    assert res.completed == 2 and res.failed == 2 and len(res.study.trials) == 4
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    assert rows[0]["state"] == "FAIL" and "nan" in rows[0]["reason"]


def test_evaluator_nan_fails_trial(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    calls = {"n": 0}

    def fn(model: Any, ctx: Any, k: int) -> dict[str, float]:
        calls["n"] += 1
        return {"val_acc": math.nan if k == 1 else 0.5}

    res = run_search(space, out=tmp_path / "run", evaluator=CountingEvaluator(fn), trials=2, progress=False)
    first = res.study.trials[0]
    assert first.state == TrialState.FAIL and "val_acc = nan" in first.user_attrs["reason"]
    assert res.completed == 2


def test_always_failing_evaluator_stops_with_a_clear_error(tmp_path: Path) -> None:
    space = write_space(tmp_path)

    def fn(model: Any, ctx: Any, k: int) -> dict[str, float]:
        raise ValueError("broken data")

    with pytest.raises(SearchError, match="10 trials in a row failed; the last: ValueError: broken data"):
        run_search(space, out=tmp_path / "run", evaluator=CountingEvaluator(fn), trials=2, progress=False, outputs=False)


def test_keyboard_interrupt_leaves_a_resumable_study(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 64, step: 4}}
          depth: {{type: int, low: 1, high: 3}}
        objectives: {{val_acc: maximize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
        study: {{sampler: {{name: random, seed: 11}}, trials: 5}}
        """)
    out = tmp_path / "run"

    def fn(model: Any, ctx: Any, k: int) -> dict[str, float]:
        if k == 3:
            raise KeyboardInterrupt
        return {"val_acc": 0.1 * k}

    ev = CountingEvaluator(fn)
    with pytest.raises(KeyboardInterrupt):
        run_search(space, out=out, evaluator=ev, progress=False)
    study = _load(out, "space")
    states = _states(study)
    assert states.get("RUNNING", 0) == 0 and states["COMPLETE"] == 2 and states["FAIL"] == 1
    failed = study.get_trials(states=(TrialState.FAIL,))[0]
    assert "interrupted" in failed.user_attrs["reason"]
    assert (out / "trials.csv").exists()  # outputs are written on the way out
    done = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    ev2 = CountingEvaluator(lambda m, ctx, k: {"val_acc": 0.5})
    res = run_search(space, out=out, evaluator=ev2, progress=False)
    assert res.completed == 5
    assert not done & {c["trial"] for c in ev2.calls}  # no completed trial was run again
    assert len(ev2.calls) == 3 - sum(1 for t in res.study.trials if t.user_attrs.get("duplicate_of") is not None)


def test_multi_objective_pareto_specs_compile(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 16, step: 4}}
          depth: {{type: int, low: 1, high: 2}}
          kernel: [1, 3]
        objectives: {{val_acc: maximize, params: minimize}}
        evaluator:
          task: classification
          data: {{source: npz, path: data.npz, val: 32}}
          train: {{epochs: 1, batch_size: 16, lr: 0.02}}
          zero_cost: [naswot, synflow, grad_norm]
        study: {{sampler: {{name: nsga2, seed: 0, population_size: 4}}, trials: 6}}
        """)
    out = tmp_path / "run"
    res = run_search(space, out=out, progress=False)
    front = res.pareto
    assert front and res.completed == 6
    specs = sorted((out / "pareto").glob("trial_*.yaml"))
    assert [int(p.stem.split("_")[1]) for p in specs] == sorted(t.number for t in front)
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) == len(front)
    for t, p in zip(sorted(front, key=lambda t: t.number), specs):
        c = compile_spec(p, CompileOptions())  # compile-ready: no choices, no imports
        assert c.cost.params == t.user_attrs["metrics"]["params"] == t.values[1]
        assert "imports" not in p.read_text() and "variants" not in p.read_text()
    m = front[0].user_attrs["metrics"]
    assert {"naswot", "synflow", "grad_norm"} <= set(m)
    # the CLI compiles an exported spec too
    assert main(["compile", str(specs[0]), "-o", str(tmp_path / "m.py")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluated"] == 6 and len(summary["pareto"]) == len(front)


def test_cdc_space_wiring_without_training(tmp_path: Path) -> None:
    """The shipped CDCN++ space: the enqueued released backbone is trial 0 with 2,257,352 params."""
    ev = CountingEvaluator(lambda m, ctx, k: {"val_acer": 1.0 / k, "val_loss": 1.0 / k, "train_loss": 1.0})
    res = run_search(ROOT / "search_spaces" / "cdc.yaml", out=tmp_path / "cdc", trials=3, evaluator=ev, progress=False)
    t0 = res.study.trials[0]
    assert t0.user_attrs["metrics"]["params"] == 2_257_352
    assert ev.calls[0]["params"] == 37_168  # the proxy (width 16) of the released backbone
    best = compile_spec(tmp_path / "cdc" / "best.yaml", CompileOptions())
    assert best.cost.params == res.best.user_attrs["metrics"]["params"]


def test_cli_search_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path)
    rc = main(["search", str(space), "--trials", "2", "--out", str(tmp_path / "run"), "--seed", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "2 trials complete" in out and "best.yaml" in out
    rc = main(["search", str(space), "--trials", "2", "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 0 and "this run: 0 trials" in capsys.readouterr().out


def test_sqlite_storage_url(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    space = write_space(tmp_path)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    res = run_search(space, out=tmp_path / "run", storage=url, trials=2, progress=False, evaluator=CountingEvaluator())
    assert res.storage == url
    assert len(optuna.load_study(study_name="tiny_space", storage=url).get_trials(states=(TrialState.COMPLETE,))) == 2


def test_load_space_of_every_shipped_space_names_its_metrics() -> None:
    for p in sorted((ROOT / "search_spaces").glob("*.yaml")):
        s = load_space(p)
        assert set(s.metric_names) <= set(s.evaluator.metrics()) | {"latency_ms"}


def test_timeout_and_grid_sampler(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: [4, 8]
          act: {{type: op, values: [relu, gelu]}}
        objectives: {{params: minimize}}
        study: {{sampler: grid, trials: 4}}
        """)
    res = run_search(space, out=tmp_path / "t", timeout=1e-9, progress=False, outputs=False)
    assert res.new_trials == 0 and res.stopped.startswith("timeout")
    res = run_search(space, out=tmp_path / "g", progress=False)
    combos = {(t.params["width"], t.params["act"]) for t in res.study.trials}
    assert res.completed == 4 and combos == {(4, "relu"), (4, "gelu"), (8, "relu"), (8, "gelu")}
