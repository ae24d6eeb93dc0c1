"""Fused never slower: the per-chain and whole-model decisions, decided with a scripted timer, and the record."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from archc import fusion_choice as fc
from archc.bench import import_file
from archc.compiler import CompileOptions
from archc.passes.equivalence import module_from_source
from archc.targets import build_artifact, prepare, write_files

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "fixtures" / "mini.yaml"

torch.set_num_threads(1)


class FakeTimer:
    """Scripted paired timings per chain label; runs each form once so both must work."""

    def __init__(self, faster: set[str], model_wins: bool = True, default: tuple[float, float] = (2.0, 1.0)) -> None:
        self.faster = faster
        self.model_wins = model_wins
        self.default = default
        self.labels: list[str] = []

    def __call__(self, label: str, fused: Callable[[], Any], unfused: Callable[[], Any]) -> list[tuple[float, float]]:
        self.labels.append(label)
        fused()
        unfused()
        if label == "":
            return [(1.0, 2.0)] * 8 if self.model_wins else [(2.0, 1.0)] * 8
        return [(1.0, 2.0)] * 8 if label in self.faster else [self.default] * 8


@pytest.fixture(scope="module")
def prep() -> Any:
    return prepare(MINI, CompileOptions(pipeline="fused", check=False))


def _flags(model: torch.nn.Module) -> dict[str, bool]:
    return {n: m.onednn for n, m in model.named_modules() if type(m).__name__ in ("FusedConv2d", "FusedLinear")}


# -- the rule ----------------------------------------------------------------------------------------


def test_rule_clear_win_loss_tie_and_noise() -> None:
    assert fc.prefer_fused([(1.0, 2.0)] * 7)[0]
    keep, why = fc.prefer_fused([(2.0, 1.0)] * 7)
    assert not keep and "unfused kept" in why
    keep, why = fc.prefer_fused([(0.99, 1.0)] * 7)  # 1 % faster: within the 2 % tie band
    assert not keep and "tie" in why
    # faster by median, but slower in 3 of 7 rounds: the upper quartile is ≥ 1, too noisy to tell
    noisy = [(0.5, 1.0)] * 4 + [(1.5, 1.0)] * 3
    keep, why = fc.prefer_fused(noisy)
    assert not keep and "noisy" in why
    assert fc.prefer_fused([(0.5, 1.0)] * 6 + [(1.5, 1.0)])[0]  # one slow round out of seven is noise
    assert not fc.prefer_fused([])[0]


def test_real_timer_pairs_each_round() -> None:
    calls: list[str] = []
    pairs = fc.interleaved_timer(rounds=4, warmup=1)("x", lambda: calls.append("f"), lambda: calls.append("u"))
    assert len(pairs) == 4 and all(f >= 0 and u >= 0 for f, u in pairs)
    assert calls[:2] == ["f", "u"] and calls[2:4] == ["f", "u"] and calls[4:6] == ["u", "f"]  # order alternates


# -- choose ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the fused path needs oneDNN")
def test_chains_that_win_stay_fused_and_losers_fall_back(prep: Any) -> None:
    model = prep.factory(True)()
    names = [n for n, _ in fc.chains(model)]
    winners = set(names[::2])
    timer = FakeTimer(winners)
    choice = fc.choose(model, prep.inputs, timer)
    assert {d.name for d in choice.chains if d.fused} == winners
    assert _flags(model) == {n: n in winners for n in names}
    assert model.channels_last and choice.channels_last and choice.model is not None and choice.model.fused
    assert set(timer.labels) == set(names) | {""}
    # the switched model still computes the same function
    ref = prep.factory(False)()
    with torch.no_grad():
        assert fc_rel(ref(*prep.inputs), model(*prep.inputs)) <= 1e-4


def test_a_tie_keeps_the_unfused_form(prep: Any) -> None:
    model = prep.factory(True)()
    choice = fc.choose(model, prep.inputs, FakeTimer(set(), default=(1.0, 1.0)))
    assert choice.chains and not any(d.fused for d in choice.chains)
    assert all("tie" in d.reason or "no fused kernel" in d.reason for d in choice.chains)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the fused path needs oneDNN")
def test_a_whole_model_that_loses_runs_the_deploy_form(prep: Any) -> None:
    model = prep.factory(True)()
    names = [n for n, _ in fc.chains(model)]
    choice = fc.choose(model, prep.inputs, FakeTimer(set(names), model_wins=False))
    assert not model.channels_last and not choice.channels_last
    assert not any(_flags(model).values()) and choice.unfused() == sorted(names)
    assert all("unfused with the whole model" in d.reason for d in choice.chains)
    # unfused + NCHW is the deploy module's arithmetic: same outputs as the portable (unlowered) module
    ref = prep.factory(False)()
    x = prep.inputs[0]
    with torch.no_grad():
        assert fc_rel(ref(x), model(x)) <= 1e-5
        assert not model.stem.conv(x).is_contiguous(memory_format=torch.channels_last) or x.shape[1] == 1


def test_keep_layout_compares_within_channels_last(prep: Any) -> None:
    model = prep.factory(True)()
    choice = fc.choose(model, prep.inputs, FakeTimer(set(), model_wins=False), keep_layout=True)
    assert model.channels_last and choice.channels_last


def test_another_dtype_is_unfused_without_timing(prep: Any) -> None:
    model = prep.factory(True)().to(torch.bfloat16)
    timer = FakeTimer(set(n for n, _ in fc.chains(model)))
    choice = fc.choose(model, [prep.inputs[0].bfloat16()], timer, whole_model=False)
    assert timer.labels == []
    assert all(not d.fused and "bfloat16" in d.reason for d in choice.chains)


# -- the record --------------------------------------------------------------------------------------


def test_record_is_written_and_read_back_and_a_changed_key_invalidates_it(tmp_path: Path, prep: Any) -> None:
    model = prep.factory(True)()
    names = [n for n, _ in fc.chains(model)]
    choice = fc.choose(model, prep.inputs, FakeTimer({names[0]}))
    key = fc.record_key("source", prep.shapes, torch.float32)
    path = tmp_path / "m.fusion.json"
    path.write_bytes(fc.record_json(key, choice))
    assert fc.record_json(key, choice) == path.read_bytes()  # deterministic bytes for the same decisions
    rec = fc.read_record(str(path))
    assert rec is not None and rec["unfused"] == sorted(names[1:]) and rec["channels_last"] is True
    assert fc.record_mismatch(rec, key) == []
    assert fc.record_mismatch(rec, {**key, "shapes": [[4, 3, 32, 32]]}) == ["shapes [[1, 3, 32, 32]] → [[4, 3, 32, 32]]"]
    assert fc.record_mismatch(rec, {**key, "dtype": "bfloat16"})[0].startswith("dtype 'float32'")
    assert fc.record_mismatch(rec, {**key, "device": "cpu: another"})[0].startswith("device")
    assert fc.record_mismatch(rec, fc.record_key("edited source", prep.shapes)) == ["the module source"]
    assert fc.record_mismatch(rec, {**key, "shapes": None}) == []  # an unknown field is not compared
    fresh = fc.apply_record(prep.factory(True)(), rec)
    assert _flags(fresh) == {n: n == names[0] for n in names}
    path.write_text("{not json")
    assert fc.read_record(str(path)) is None


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the fused path needs oneDNN")
def test_artifact_applies_its_record_and_falls_back_when_it_does_not_match(tmp_path: Path, prep: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    names = [n for n, _ in fc.chains(prep.factory(True)())]
    monkeypatch.setattr(fc, "interleaved_timer", lambda: FakeTimer({names[1]}))
    out = tmp_path / "m.py"
    res = build_artifact(prep, "pytorch", out)
    write_files(res.data)
    again = build_artifact(prep, "pytorch", tmp_path / "n.py")
    assert again.data[tmp_path / "n.py"] == res.data[out]  # the .py is byte-identical; the record is beside it
    rec = json.loads((tmp_path / "m.fusion.json").read_text())
    assert rec["key"]["shapes"] == [[1, 3, 32, 32]] and rec["unfused"] == sorted(set(names) - {names[1]})
    mod = import_file(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = mod.create_model()
        assert _flags(model) == {n: n == names[1] for n in names} and model.channels_last
        assert _flags(mod.create_model(input_shape=(1, 3, 32, 32)))[names[1]]
    with pytest.warns(UserWarning, match=r"measured for another setting \(shapes"):
        other = mod.create_model(input_shape=(8, 3, 32, 32))
    assert not any(_flags(other).values()) and not other.channels_last
    rec["key"]["device"] = "cpu: some other machine"
    (tmp_path / "m.fusion.json").write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match="measured for another setting \\(device"):
        assert not any(_flags(mod.create_model()).values())
    (tmp_path / "m.fusion.json").unlink()
    with pytest.warns(UserWarning, match="no fusion record"):
        assert not any(_flags(mod.create_model()).values())
    # imported from memory (no file, no record): every chain fused, as archc's own checks run it
    assert all(_flags(module_from_source(res.data[out].decode()).create_model()).values())


def fc_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) / float(a.float().abs().max())


# -- the first-run choice of fused cudagraph modules (dwpw chains), decided on CPU with a scripted timer --

DWPW_SPEC = """archc: 1
name: dwpw
inputs:
  x: [B, 8, 16, 16]
blocks:
  blk:
    graph:
      - dw: {op: conv2d, out: 8, kernel: 3, groups: 8}
      - act: relu
      - pw: {op: conv2d, out: 8, kernel: 1}
      - add: {op: add, in: [x, pw]}
graph:
  - b1: blk
  - b2: blk
"""


def test_cudagraph_dwpw_chains_are_chosen_on_first_run_and_recorded(tmp_path: Path) -> None:
    from archc.backends.cudagraph import cudagraph_source

    cg = prepare("dwpw.yaml", CompileOptions(pipeline="fused", check=False), text=DWPW_SPEC)
    src, _ = cudagraph_source(cg.source, tuple(cg.inputs[0].shape), fused=True)
    out = tmp_path / "cg.py"
    out.write_text(src)
    mod = import_file(out)
    model = mod.create_model().eval()
    x = cg.inputs[0]
    with torch.no_grad():
        ref = model(x)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.archc_unfused = True  # record the chains through the PyTorch path: Triton cannot run on CPU
    mod.dwpw_supported = lambda c1, c2, x: True  # as if on a GPU the kernel supports
    seen: list[str] = []

    def timer(label: str, fused: Callable[[], Any], unfused: Callable[[], Any]) -> list[tuple[float, float]]:
        seen.append(label)
        unfused()  # the fused form would launch the Triton kernel
        return [(1.0, 2.0)] * 8 if len(seen) % 2 else [(2.0, 1.0)] * 8

    rec = mod.apply_choice(model, x, timer)
    assert len(seen) == 2 and rec["key"]["shape"] == list(x.shape) and rec["key"]["device"] == "cpu"
    kept = {n for n, c in rec["chains"].items() if c["fused"]}
    assert kept == set(seen[::2]) and set(rec["unfused"]) == set(seen[1::2])
    assert {n for n, m in model.named_modules() if getattr(m, "archc_unfused", None) is False} == kept
    stored = json.loads((tmp_path / "cg.fusion.json").read_text())
    assert stored["unfused"] == rec["unfused"]
    # the second run applies the record without timing; another shape is measured again
    seen.clear()
    fresh = mod.create_model().eval()
    assert mod.apply_choice(fresh, x, timer)["unfused"] == rec["unfused"] and seen == []
    for m in fresh.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.archc_unfused = True
    mod.apply_choice(fresh, torch.cat([x, x]), timer)
    assert seen
    mod.dwpw_supported = lambda c1, c2, x: False
    with torch.no_grad():  # a chain kept "fused" still computes the same function where the kernel cannot run
        assert fc_rel(ref, model(x)) <= 1e-5


def test_fused_torchscript_is_kept_only_when_it_beats_the_deploy_form(prep: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    names = {n for n, _ in fc.chains(prep.factory(True)())}
    for pt_wins, verdict in ((False, "the deploy form kept"), (True, "fused kept")):
        class Timer(FakeTimer):
            wins = pt_wins

            def __call__(self, label: str, fused: Callable[[], Any], unfused: Callable[[], Any]) -> list[tuple[float, float]]:
                if label == "torchscript":  # the two finished .pt files, both run
                    fused()
                    unfused()
                    return [(1.0, 2.0)] * 8 if self.wins else [(2.0, 1.0)] * 8
                return super().__call__(label, fused, unfused)

        monkeypatch.setattr(fc, "interleaved_timer", lambda **_: Timer(names))
        res = build_artifact(prep, "torchscript", Path("unused.pt"))
        assert any(verdict in n for n in res.notes), res.notes
        assert res.errors["torchscript vs eager"] <= 1e-4
