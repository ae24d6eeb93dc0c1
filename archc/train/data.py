"""What the trainer trains on, and how batches are drawn.

Two kinds of data, one interface:

* :class:`TensorData` — both splits as tensors in memory (the bundled digits, ``.npz`` arrays, the
  search's proxy data). :class:`TensorBatches` draws its batches by indexing: a seeded permutation per
  epoch and ``index_select``, no DataLoader — tiny proxy models train on tiny data, where a loader's
  per-batch collation and worker hand-off cost more than the model.
* :class:`DatasetData` — ``torch.utils.data.Dataset`` splits (image folders read from disk, decoded and
  augmented in DataLoader worker processes). :class:`LoaderBatches` builds the DataLoader.

Both shard the samples of every step across the processes of a distributed run; both are
deterministic per epoch given the seed, so a resumed run draws the batches the uninterrupted run
would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from archc.train.errors import TrainError
from archc.train.optim import steps_per_epoch

__all__ = ["TensorData", "DatasetData", "TensorBatches", "LoaderBatches", "make_batches"]


@dataclass
class TensorData:
    """Tensors of one task, already at the model's input size.

    ``y_*`` are class indices (classification) or depth maps N×h×w (depth); ``live_*`` are the binary
    live (1) / spoof (0) labels of the depth task.
    """

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: int
    live_train: torch.Tensor | None = None
    live_val: torch.Tensor | None = None
    description: str = ""

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.x_train), len(self.x_val)

    def to(self, device: torch.device) -> TensorData:
        """The same data on ``device`` (self when it is there already)."""
        if self.x_train.device == device:
            return self
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, x_train=move(self.x_train), y_train=move(self.y_train), x_val=move(self.x_val),
                       y_val=move(self.y_val), live_train=move(self.live_train), live_val=move(self.live_val))


@dataclass
class DatasetData:
    """Dataset splits read from disk; items are ``(image C×H×W, target)``.

    Depth task: ``live_val`` holds the live/spoof labels of the validation items in order;
    ``calibration`` is a fixed set of training items without augmentation (labels ``calibration_live``)
    on which the liveness threshold is chosen (see :mod:`archc.train.metrics`).
    """

    task: str
    train: Dataset
    val: Dataset
    classes: int
    live_val: torch.Tensor | None = None
    calibration: Dataset | None = None
    calibration_live: torch.Tensor | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.train), len(self.val)  # type: ignore[arg-type]


class TensorBatches:
    """Training batches of in-memory tensors: one seeded permutation per epoch, contiguous slices of it.

    With ``world`` > 1 processes a step takes ``world × batch_size`` samples of the (identical on every
    process) permutation, of which process ``rank`` takes the ``rank``-th slice; the last partial step of
    an epoch is dropped then, so every process gets equal shares (DDP's gradient mean then equals the
    mean over the whole step's samples).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cfg: Any, rank: int = 0, world: int = 1) -> None:
        self.x, self.y = x, y
        self.bs = cfg.batch_size
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.steps = steps_per_epoch(len(x), cfg, world, drop_last=world > 1)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch (the permutation continues the generator's stream)."""
        perm = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        bs, step = self.bs, self.bs * self.world
        lo = self.rank * bs
        for b in range(self.steps):
            idx = perm[b * step:(b + 1) * step]
            if self.world > 1:
                idx = idx[lo:lo + bs]
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class LoaderBatches:
    """Training batches from a DataLoader with worker processes.

    Sampling goes through :class:`~torch.utils.data.DistributedSampler` (one replica when not
    distributed), reseeded per epoch with ``set_epoch``; the loader's generator — which seeds the
    workers' augmentation RNGs — is reseeded per epoch too. Workers are not persistent: a fresh set per
    epoch is what makes an epoch's augmentations a function of (seed, epoch), so resuming is exact.
    The last partial batch is dropped when there is at least one full one (a batch of one sample
    breaks BatchNorm).
    """

    def __init__(self, dataset: Dataset, cfg: Any, rank: int = 0, world: int = 1, pin_memory: bool = False) -> None:
        self.cfg = cfg
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
        per_rank = len(self.sampler)
        drop_last = per_rank > cfg.batch_size
        self.generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.workers,
                                 pin_memory=pin_memory, drop_last=drop_last, generator=self.generator)
        full = per_rank // cfg.batch_size if drop_last else -(-per_rank // cfg.batch_size)
        self.steps = min(full, cfg.max_batches) if cfg.max_batches else full

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.cfg.seed * 1_000_003 + epoch)
        for b, batch in enumerate(self.loader):
            if b >= self.steps:
                break
            yield batch[0], batch[1]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def make_batches(data: TensorData | DatasetData, cfg: Any, rank: int = 0, world: int = 1,
                 pin_memory: bool = False) -> TensorBatches | LoaderBatches:
    """The training-batch source of ``data`` (raises :class:`TrainError` when an epoch would have no step)."""
    if isinstance(data, TensorData):
        batches: TensorBatches | LoaderBatches = TensorBatches(data.x_train, data.y_train, cfg, rank, world)
    else:
        batches = LoaderBatches(data.train, cfg, rank, world, pin_memory)
    if len(batches) == 0:
        n = data.sizes[0]
        raise TrainError(f"the training split has {n} samples: not one step of {cfg.batch_size} × {world} process(es)",
                         hint="lower --batch-size or add data")
    return batches
