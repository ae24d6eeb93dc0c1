"""Image transforms for training from disk (Pillow images in, tensors out).

Training: random resized crop — a box of area fraction s ~ U(0.08, 1) of the image and aspect ratio r
with log r ~ U(log 3/4, log 4/3) (up to 10 draws; else the largest centred box of a clamped ratio),
resized to the model's input size — then a horizontal flip with probability ½. Validation: the
centred box of ``crop_pct`` (0.875) of the largest box with the input's aspect, resized: the same
as resizing the shorter side to size/0.875 and cropping the centre. Both end in per-channel
normalization (ImageNet statistics for RGB; their average for grayscale).

Randomness comes from torch's global RNG, which DataLoader seeds in every worker process; the same
crop box and flip are applied to a depth-map target so the supervision stays aligned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Crop", "random_resized_crop", "center_crop", "apply_crop", "to_tensor", "normalize", "MEAN", "STD"]

MEAN = {3: (0.485, 0.456, 0.406), 1: (0.449,)}
STD = {3: (0.229, 0.224, 0.225), 1: (0.226,)}


@dataclass(frozen=True)
class Crop:
    """A box as fractions of the image (left, top, width, height) and whether to flip it horizontally."""

    left: float
    top: float
    width: float
    height: float
    flip: bool = False


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def random_resized_crop(w: int, h: int, out_w: int, out_h: int, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> Crop:
    """A random box of an image ``w``×``h`` (see the module docstring), as fractions, with a random flip."""
    area = w * h
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    box = None
    for _ in range(10):
        target = area * _uniform(*scale)
        r = math.exp(_uniform(lo, hi))
        cw, ch = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
        if 0 < cw <= w and 0 < ch <= h:
            left = int(torch.randint(0, w - cw + 1, ()))
            top = int(torch.randint(0, h - ch + 1, ()))
            box = (left, top, cw, ch)
            break
    if box is None:  # fallback: the whole image cropped centrally to the nearest allowed aspect
        r = w / h
        cw, ch = (w, int(round(w / ratio[0]))) if r < ratio[0] else ((int(round(h * ratio[1])), h) if r > ratio[1] else (w, h))
        cw, ch = min(cw, w), min(ch, h)
        box = ((w - cw) // 2, (h - ch) // 2, cw, ch)
    do_flip = flip and bool(torch.rand(()) < 0.5)
    left, top, cw, ch = box
    return Crop(left / w, top / h, cw / w, ch / h, do_flip)


def center_crop(w: int, h: int, out_w: int, out_h: int, crop_pct: float = 0.875) -> Crop:
    """The centred box that resize-shorter-side-to-size/crop_pct + centre crop would keep."""
    s = min(w / out_w, h / out_h) * crop_pct
    cw, ch = min(w, out_w * s), min(h, out_h * s)
    return Crop((w - cw) / 2 / w, (h - ch) / 2 / h, cw / w, ch / h, False)


def apply_crop(img: Any, crop: Crop, out_w: int, out_h: int) -> Any:
    """The box ``crop`` of a Pillow image, resized (bilinear, antialiased) to ``out_w``×``out_h``, flipped if asked."""
    from PIL import Image

    w, h = img.size
    # crop first (whole pixels), then resize: resizing with a box would let the filter read pixels outside it
    left, top = round(crop.left * w), round(crop.top * h)
    right, bottom = max(left + 1, round((crop.left + crop.width) * w)), max(top + 1, round((crop.top + crop.height) * h))
    out = img.crop((left, top, min(right, w), min(bottom, h))).resize((out_w, out_h), resample=Image.Resampling.BILINEAR)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if crop.flip else out


def to_tensor(img: Any) -> torch.Tensor:
    """A Pillow image (L, RGB or F) as a float tensor C×H×W; 8-bit values are scaled to [0, 1]."""
    arr = np.array(img, dtype=np.float32)  # a copy: torch wants writable memory
    if img.mode in ("L", "RGB", "RGBA", "LA", "P"):
        arr = arr / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x − mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s
