"""Data-parallel training with torch's own engine: DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N -m archc train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and the
rendezvous address; :func:`DistContext.from_env` joins the process group (``nccl`` on CUDA, ``gloo``
on the CPU) and pins each process to ``cuda:LOCAL_RANK``. A process group initialized by the caller
(``torch.distributed.init_process_group``) is used as it is.

Each process trains on its own share of every step's samples; DDP averages the gradients, so with W
processes of batch B a step equals one process on batch W·B (when BatchNorm statistics are
synchronized: on CUDA BatchNorm becomes SyncBatchNorm; torch's SyncBatchNorm does not run on the CPU,
so there each process normalizes with its own batch). Only rank 0 writes files and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from archc.train.errors import TrainError

__all__ = ["DistContext"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def current(cls) -> DistContext:
        """The initialized process group's ranks (single-process when there is none)."""
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return cls(dist.get_rank(), dist.get_world_size(), local)
        return cls()

    @classmethod
    def from_env(cls, device: torch.device) -> DistContext:
        """Join the process group that ``torchrun`` describes in the environment (nothing when WORLD_SIZE ≤ 1)."""
        if dist.is_available() and dist.is_initialized():
            return cls.current()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_available():
            raise TrainError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        backend = "nccl" if device.type == "cuda" else "gloo"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            torch.cuda.set_device(local)
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            raise TrainError(f"cannot join the distributed run ({backend}): {str(exc).splitlines()[0] if str(exc) else exc}",
                             hint="start it with torchrun (it sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)") from None
        return cls(dist.get_rank(), dist.get_world_size(), local)

    def device_for(self, device: torch.device) -> torch.device:
        """The device of this process: distributed CUDA runs put one process on each local GPU (cuda:LOCAL_RANK)."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` under DistributedDataParallel (BatchNorm → SyncBatchNorm on CUDA); as is when single-process.

        The SyncBatchNorm conversion replaces modules, so call this before building the optimizer.
        """
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[device.index])
        return DistributedDataParallel(model)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over all processes (in place)."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm running statistics).

        DDP broadcasts buffers before each forward pass, so after the last step of an epoch each process
        holds the statistics of its own last batch; validating with rank 0's makes every process report
        the same metrics (with SyncBatchNorm they agree already).
        """
        if self.active:
            for b in model.buffers():
                dist.broadcast(b.data, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()
