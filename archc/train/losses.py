"""Task losses.

* ``classification``: cross-entropy on logits N×K against class indices.
* ``depth`` (face anti-spoofing with pixel-wise depth supervision, as CDCN trains): MSE between the
  predicted and the target depth maps plus the contrastive depth loss — the 8 neighbour-minus-centre
  differences (fixed 3×3 kernels, applied depthwise) of prediction and target, compared by MSE:

      L = MSE(D̂, D) + MSE(K ⊛ D̂, K ⊛ D),   (K ⊛ D)_n(p) = D(p + o_n) − D(p),  o_n ∈ 3×3 ring

  The model may output maps N×h×w or N×1×h×w.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from archc.train.errors import TrainError

__all__ = ["contrast_depth", "depth_loss", "as_maps", "task_loss", "check_output"]


def _contrast_kernels() -> torch.Tensor:
    k = torch.zeros(8, 1, 3, 3)
    for n, (i, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]):
        k[n, 0, 1, 1] = -1.0
        k[n, 0, i, j] = 1.0
    return k


_KERNELS = _contrast_kernels()


def contrast_depth(x: torch.Tensor) -> torch.Tensor:
    """The 8 neighbour-minus-centre differences of depth maps ``x`` (N×h×w) → N×8×(h−2)×(w−2)."""
    k = _KERNELS.to(dtype=x.dtype, device=x.device)
    return F.conv2d(x.unsqueeze(1).expand(-1, 8, -1, -1), k, groups=8)


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CDCN's loss: MSE(pred, target) + MSE(contrast(pred), contrast(target))."""
    return F.mse_loss(pred, target) + F.mse_loss(contrast_depth(pred), contrast_depth(target))


def as_maps(out: torch.Tensor) -> torch.Tensor:
    """Depth maps N×h×w from a model output N×h×w or N×1×h×w."""
    if out.dim() == 4 and out.shape[1] == 1:
        return out[:, 0]
    return out


def _depth(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return depth_loss(as_maps(out), y)


def task_loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``loss(output, target)`` of ``task`` (``classification`` or ``depth``)."""
    if task == "depth":
        return _depth
    return F.cross_entropy


def check_output(task: str, out_shape: tuple[int, ...], classes: int, target_hw: tuple[int, ...] | None = None) -> None:
    """Raise :class:`TrainError` when a model output of ``out_shape`` does not fit the task's targets.

    ``classes`` is the class count of a classification task; ``target_hw`` the depth-map size of a
    depth task (None: any size).
    """
    if task == "classification":
        if len(out_shape) != 2 or out_shape[1] != classes:
            raise TrainError(
                f"the model outputs {list(out_shape)} but the data has {classes} classes (expected [B, {classes}])",
                hint=f"set the model's class count to {classes} (e.g. -p num_classes={classes})")
        return
    ok = len(out_shape) == 3 or (len(out_shape) == 4 and out_shape[1] == 1)
    if ok and target_hw is not None:
        ok = tuple(out_shape[-2:]) == tuple(target_hw)
    if not ok:
        want = f"[B, {target_hw[0]}, {target_hw[1]}] or [B, 1, {target_hw[0]}, {target_hw[1]}]" if target_hw else "[B, h, w] or [B, 1, h, w]"
        raise TrainError(f"the model outputs {list(out_shape)}; the depth task needs depth maps {want}",
                         hint="train a depth-map spec (e.g. specs/cdcn.yaml) or use --task classification")
