"""The trainer on in-memory data: learning, metrics, schedules, clipping, checkpoints and exact resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from archc.search import evaluate
from archc.train import losses
from archc.train.checkpoint import load_checkpoint
from archc.train.config import TrainOptions
from archc.train.data import TensorBatches, TensorData
from archc.train.device import resolve_device, torch_threads
from archc.train.ema import WeightEma
from archc.train.errors import NonFiniteError, TrainError
from archc.train.loop import Trainer
from archc.train.metrics import acer_threshold, validate

from .conftest import build, spec_source, tensor_data


class Stop(Exception):
    pass


def test_learns_reports_every_epoch_and_writes_the_run(tmp_path: Path) -> None:
    data = tensor_data()
    model = build(spec_source())
    before = validate(model, data)["val_acc"]
    seen: list[tuple[int, dict[str, float]]] = []
    lines: list[str] = []
    trainer = Trainer(model, TrainOptions(epochs=4, batch_size=16, lr=0.02, device="cpu"))
    m = trainer.fit(data, report=lambda e, ms: seen.append((e, ms)), log=lines.append, out=tmp_path)
    assert [e for e, _ in seen] == [0, 1, 2, 3] and len(lines) == 4 and lines[0].startswith("epoch 1/4: train_loss")
    assert set(m) == {"train_loss", "val_loss", "val_acc"} and m == seen[-1][1]
    assert m["val_acc"] > max(0.6, before + 0.2)
    assert seen[-1][1]["train_loss"] < seen[0][1]["train_loss"]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds"}
    assert math.isclose(float(rows[-1]["val_acc"]), m["val_acc"], rel_tol=1e-6)
    ck = load_checkpoint(tmp_path / "last.pth")
    assert ck["epoch"] == 4 and len(ck["history"]) == 4
    weights = torch.load(tmp_path / "model.pth", weights_only=True)
    fresh = build(spec_source(), seed=5)
    fresh.load_state_dict(weights)
    assert validate(fresh, data) == validate(model, data)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    opts = TrainOptions(epochs=1, batch_size=32, device="cpu")
    Trainer(build(spec_source()), opts).fit(tensor_data(), out=tmp_path)
    with pytest.raises(TrainError, match="already holds a training run"):
        Trainer(build(spec_source()), opts).fit(tensor_data(), out=tmp_path)
    with pytest.raises(TrainError, match="nothing to resume"):
        Trainer(build(spec_source()), opts).fit(tensor_data(), out=tmp_path / "new", resume=True)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_two_epochs_equal_one_epoch_then_resume(tmp_path: Path, optimizer: str) -> None:
    """Interrupted after epoch 1 and resumed from last.pth, a run ends with the uninterrupted run's weights."""
    data = tensor_data()
    opts = TrainOptions(epochs=2, batch_size=16, optimizer=optimizer, lr=0.05, weight_decay=1e-4, schedule="cosine",
                        device="cpu", seed=3)
    src = spec_source()
    straight = Trainer(build(src), opts)
    straight.fit(data, out=tmp_path / "a")

    def stop(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        Trainer(build(src), opts).fit(data, out=tmp_path / "b", report=stop)
    assert load_checkpoint(tmp_path / "b" / "last.pth")["epoch"] == 1
    torch.manual_seed(1234)  # the resumed run must not depend on the RNG state of the process that resumes it
    resumed = Trainer(build(src, seed=99), opts)
    resumed.fit(data, out=tmp_path / "b", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "a" / "metrics.csv").read_text().count("\n") == (tmp_path / "b" / "metrics.csv").read_text().count("\n") == 3


def test_weight_ema_follows_the_ramped_decay_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEma(model, decay=0.5)
    expect = {k: v.clone() for k, v in model.state_dict().items()}
    for n, target in enumerate([1.0, -2.0, 4.0]):
        with torch.no_grad():
            for v in model.state_dict().values():
                v.fill_(target if v.is_floating_point() else n + 1)
        ema.update()
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18…, 0.25 (the ramp), never above the decay
        expect = {k: (d * e + (1 - d) * target) if e.is_floating_point() else torch.full_like(e, n + 1)
                  for k, e in expect.items()}
    got = ema.module.state_dict()
    for k, e in expect.items():
        assert torch.allclose(got[k], e.to(got[k].dtype), rtol=0, atol=1e-6), k
    assert ema.updates == 3 and not any(p.requires_grad for p in ema.module.parameters())


def test_ema_is_validated_saved_and_resumed(tmp_path: Path) -> None:
    """With ``ema`` the metrics and model.pth are the average's, and a resumed run ends with the same average."""
    data = tensor_data()
    opts = TrainOptions(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, ema=0.9, device="cpu", seed=3)
    src = spec_source()
    straight = Trainer(build(src), opts)
    m = straight.fit(data, out=tmp_path / "a")
    assert straight.validated_model is straight.ema.module and straight.ema.updates == 2 * 6
    assert m["val_loss"] == validate(straight.ema.module, data)["val_loss"] != validate(straight.model, data)["val_loss"]
    fresh = build(src, seed=5)
    fresh.load_state_dict(torch.load(tmp_path / "a" / "model.pth", weights_only=True))
    assert validate(fresh, data) == validate(straight.ema.module, data)

    def stop(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        Trainer(build(src), opts).fit(data, out=tmp_path / "b", report=stop)
    resumed = Trainer(build(src, seed=99), opts)
    resumed.fit(data, out=tmp_path / "b", resume=True)
    a, b = straight.ema.module.state_dict(), resumed.ema.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and resumed.ema.updates == straight.ema.updates
    with pytest.raises(TrainError, match="ema 0.9 → 0.99"):
        Trainer(build(src), opts.replace(ema=0.99)).fit(data, out=tmp_path / "b", resume=True)
    with pytest.raises(TrainError, match="EMA decay must lie between 0 and 1"):
        TrainOptions(ema=1.0)


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    opts = TrainOptions(epochs=1, batch_size=16, device="cpu")
    Trainer(build(spec_source()), opts).fit(tensor_data(), out=tmp_path)
    with pytest.raises(TrainError, match=r"other settings \(epochs 1 → 3\)"):
        Trainer(build(spec_source()), opts.replace(epochs=3)).fit(tensor_data(), out=tmp_path, resume=True)
    with pytest.raises(TrainError, match="batch_size 16 → 8"):
        Trainer(build(spec_source()), opts.replace(batch_size=8)).fit(tensor_data(), out=tmp_path, resume=True)
    longer = Trainer(build(spec_source()), opts.replace(epochs=2, schedule="constant"))
    with pytest.raises(TrainError, match="schedule cosine → constant"):
        longer.fit(tensor_data(), out=tmp_path, resume=True)


def test_proxy_training_is_the_trainer() -> None:
    """train_proxy (the search's evaluator) and the Trainer give the same weights and metrics."""
    from archc.search.space import TrainConfig

    data = tensor_data()
    src = spec_source()
    cfg = TrainConfig(epochs=2, batch_size=16, optimizer="adam", lr=0.01, schedule="step", seed=1)
    m1, m2 = build(src), build(src)
    r1 = evaluate.train_proxy(m1, data, cfg)
    r2 = Trainer(m2, TrainOptions.from_config(cfg, device="cpu")).fit(data)
    assert r1 == r2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_losses_are_reexported_by_the_search() -> None:
    assert evaluate.depth_loss is losses.depth_loss and evaluate.contrast_depth is losses.contrast_depth
    assert evaluate.task_loss("depth") is losses.task_loss("depth")
    assert evaluate.NonFiniteError is NonFiniteError


@pytest.mark.parametrize(("schedule", "final"), [("cosine", 0.0), ("step", 0.001), ("constant", 0.1)])
def test_schedules_are_per_step(schedule: str, final: float) -> None:
    data = tensor_data(n_train=64)
    opts = TrainOptions(epochs=2, batch_size=16, optimizer="sgd", lr=0.1, schedule=schedule, device="cpu")
    t = Trainer(build(spec_source()), opts)
    t.fit(data)
    lrs = [row["lr"] for row in t.history]
    assert math.isclose(lrs[-1], final, abs_tol=1e-12)
    if schedule == "cosine":  # after 4 of 8 steps: half way down the cosine
        assert math.isclose(lrs[0], 0.05, rel_tol=1e-9)
    if schedule == "step":  # milestones at steps 4 and 6 of 8
        assert math.isclose(lrs[0], 0.01, rel_tol=1e-9)


def test_gradient_clipping_bounds_the_step() -> None:
    data = tensor_data(n_train=16)
    src = spec_source()
    opts = TrainOptions(epochs=1, batch_size=16, optimizer="sgd", lr=1.0, momentum=0.0, schedule="constant",
                        clip_grad=1e-3, device="cpu")
    model = build(src)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    Trainer(model, opts).fit(data)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 * (1 + 1e-5)
    unclipped = build(src)
    Trainer(unclipped, opts.replace(clip_grad=None)).fit(data)
    assert float((torch.cat([p.detach().flatten() for p in unclipped.parameters()]) - before).norm()) > 1e-2


def test_non_finite_loss_raises() -> None:
    data = tensor_data(n_train=32)
    data.x_train[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="epoch 1"):
        Trainer(build(spec_source()), TrainOptions(epochs=1, batch_size=32, device="cpu")).fit(data)


def test_before_step_hook_and_parameter_subset() -> None:
    """A bi-level search trains a subset of the parameters and acts before every step."""
    data = tensor_data(n_train=64)
    model = build(spec_source())
    head = list(model.fc.parameters()) if hasattr(model, "fc") else list(model.parameters())[-2:]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if all(p is not q for q in head)}
    steps: list[int] = []
    Trainer(model, TrainOptions(epochs=1, batch_size=16, lr=0.05, device="cpu"), parameters=head,
            before_step=lambda s, x, y: steps.append(s)).fit(data)
    assert steps == [0, 1, 2, 3]
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


def test_tensor_batches_shard_a_step_across_processes() -> None:
    x = torch.arange(20.0)[:, None]
    opts = TrainOptions(batch_size=3, seed=0)
    whole = [b[0].flatten().tolist() for b in TensorBatches(x, x, opts.replace(batch_size=6)).epoch(0)]
    parts = [[b[0].flatten().tolist() for b in TensorBatches(x, x, opts, rank=r, world=2).epoch(0)] for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 3  # 20 samples, 6 per step: the partial last step is dropped
    assert [p0 + p1 for p0, p1 in zip(*parts)] == whole[:3]


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(TrainError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_thread_count_is_restored_after_the_block_and_after_an_error() -> None:
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(Stop), torch_threads(before + 1):
        raise Stop
    assert torch.get_num_threads() == before


def test_bad_options_are_errors() -> None:
    with pytest.raises(TrainError, match="unknown optimizer 'lamb'"):
        TrainOptions(optimizer="lamb")
    with pytest.raises(TrainError, match="epochs must be at least 1"):
        TrainOptions(epochs=0)
    with pytest.raises(TrainError, match="not one step"):
        Trainer(build(spec_source()), TrainOptions(batch_size=8, max_batches=None, device="cpu")).fit(
            tensor_data(n_train=0, n_val=8))


def test_acer_threshold_hand_cases() -> None:
    live = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert acer_threshold(torch.tensor([0.1, 0.2, 0.3, 0.4]), live) == pytest.approx(0.25)
    assert acer_threshold(torch.tensor([0.1, 0.1, 0.1, 0.1]), live) == pytest.approx(-0.9)  # no separation: lowest
    # one spoof above the lives: best is to give up that spoof (ACER 0.25), not the two lives (ACER 0.5)
    assert acer_threshold(torch.tensor([0.1, 0.9, 0.5, 0.6]), torch.tensor([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.3)


class _Maps(torch.nn.Module):
    """Predicts 1/100 of the true depth map: far below the target scale, perfectly separable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.01 * x[:, :1, :4, :4] + 0.0 * self.w

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))


def test_depth_metrics_rank_shrunk_maps_correctly() -> None:
    """Early in training predicted maps are small; a threshold chosen on the training scores still separates."""
    g = torch.Generator().manual_seed(0)
    live_tr, live_va = (torch.arange(40) % 2).float(), (torch.arange(20) % 2).float()
    x_tr = (0.5 + 0.5 * torch.rand(40, 1, 4, 4, generator=g)) * live_tr.view(-1, 1, 1, 1)
    x_va = (0.5 + 0.5 * torch.rand(20, 1, 4, 4, generator=g)) * live_va.view(-1, 1, 1, 1)
    data = TensorData("depth", x_tr, x_tr[:, 0], x_va, x_va[:, 0], 2, live_tr, live_va)
    m = validate(_Maps(), data)
    assert m["val_acc"] == 1.0 and m["val_acer"] == 0.0 and m["val_auc"] == 1.0
