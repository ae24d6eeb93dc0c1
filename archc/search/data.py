"""Proxy data sets for search: real data that ships inside a package or lies on disk — never a download.

* ``digits`` (default): scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1,797
  8×8 grayscale images, 10 classes, shipped inside the scikit-learn wheel). For the ``depth`` task
  (face anti-spoofing with depth-map supervision, as CDCN trains) a binary live/spoof task is derived
  deterministically: digits 0–4 are "live" with the depth map taken from the image intensity
  (0..16 scaled to 0..1 and resized to the output map), digits 5–9 are "spoof" with an all-zero map.
  This is a *proxy* that exercises the loss, the data path and the ranking of architectures; it is
  not face data and says nothing about anti-spoofing accuracy.
* ``digits`` with ``hard: true``: the same digits made into a task on which architectures differ (on the
  plain 8×8 digits every reasonable network ends at 96–98% and a long training ranks them by seed
  noise). Each sample is one digit drawn onto a 16×16 canvas with a seeded random rotation (±30°),
  scale (55–85% of the canvas) and position, a fainter second digit of another class (a distractor at
  40% intensity, placed independently) and Gaussian noise (σ 0.1). The original digits are split into
  training and validation *before* augmentation, so no validation sample is a transform of a training
  digit: ``val_fraction`` (default 0.2) of the originals feed validation, the rest training, and
  ``train``/``val`` count the drawn samples (more than the originals is fine: each copy is a new draw;
  the validation set does not change with ``train``). Everything is a function of ``seed``.
* ``folder``: one sub-folder per class holding ``.npy`` arrays (H×W, C×H×W or H×W×C) or images
  (``.png``/``.jpg``/..., read with Pillow when it is installed). For the ``depth`` task the folders
  are ``live`` and ``spoof`` and the targets are binary maps (all ones for live, zeros for spoof).
* ``npz``: arrays ``x`` (N×H×W, N×C×H×W or N×H×W×C) and ``y`` (class labels; for ``depth``: 1 live,
  0 spoof), optionally ``depth`` (N×h×w maps) — or the same with ``_train``/``_val`` suffixes.

Images are resized (bilinear) to the model's input size, their channels repeated or averaged to the
model's channel count, and standardized with the training split's mean and standard deviation. Splits
are deterministic (a seeded permutation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archc.diagnostics import ArchcError
from archc.search.glyphs import CLASSES as GLYPH_CLASSES
from archc.search.glyphs import render_glyphs
from archc.search.space import DataConfig
from archc.train.data import TensorData

__all__ = ["ProxyData", "load_data", "depth_targets", "DataError", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_CACHE: dict[Any, ProxyData] = {}
#: the glyphs' sample counts when the data config gives none
GLYPHS_TRAIN = 8192
GLYPHS_VAL = 2048


class DataError(ArchcError):
    """The proxy data cannot be loaded (a missing package, an unreadable file, a bad layout)."""


#: proxy data is the trainer's in-memory data (tensors at the model's input size; see archc.train.data)
ProxyData = TensorData


def _require_sklearn() -> Any:
    try:
        import sklearn.datasets as skd
    except ImportError:
        raise DataError("the default 'digits' data set needs scikit-learn, which is not installed",
                        hint="pip install 'archc[search]' (or: pip install scikit-learn), or use data source 'folder' or 'npz'") from None
    return skd


def _digits() -> tuple[np.ndarray, np.ndarray]:
    skd = _require_sklearn()
    d = skd.load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


#: the harder digits: canvas side, rotation range (degrees), digit scale (fraction of the canvas),
#: distractor intensity and noise σ — fixed so that a space file's ``hard: true`` means one task
HARD_CANVAS = 16
HARD_ROTATE = 30.0
HARD_SCALE = (0.55, 0.85)
HARD_DISTRACTOR = 0.4
HARD_NOISE = 0.1


def _place(digits: np.ndarray, rng: np.random.RandomState) -> torch.Tensor:
    """Each 8×8 digit warped onto a HARD_CANVAS² canvas: random rotation, scale and position (zeros outside)."""
    n = len(digits)
    ang = np.deg2rad(rng.uniform(-HARD_ROTATE, HARD_ROTATE, n))
    f = rng.uniform(*HARD_SCALE, n)
    # the digit's centre stays inside the canvas, so some of it is always visible
    tx, ty = (rng.uniform(-(1 - f), 1 - f) for _ in range(2))
    cos, sin = np.cos(ang) / f, np.sin(ang) / f
    # affine_grid maps canvas coordinates to digit coordinates: inverse of scale·rotate then shift
    theta = np.stack([np.stack([cos, -sin, -(cos * tx - sin * ty)], 1),
                      np.stack([sin, cos, -(sin * tx + cos * ty)], 1)], 1).astype(np.float32)
    grid = F.affine_grid(torch.from_numpy(theta), [n, 1, HARD_CANVAS, HARD_CANVAS], align_corners=False)
    return F.grid_sample(torch.from_numpy(digits)[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _hard_digits(images: np.ndarray, labels: np.ndarray, pool: np.ndarray, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` hard samples drawn from the digits ``pool`` (indices), cycling through it in seeded order."""
    rng = np.random.RandomState(seed)
    idx = np.concatenate([rng.permutation(pool) for _ in range(-(-n // len(pool)))])[:n]
    y = labels[idx]
    # the distractor: a digit of another class from the same pool
    other = rng.randint(len(pool), size=n)
    clash = labels[pool[other]] == y
    while clash.any():
        other[clash] = rng.randint(len(pool), size=int(clash.sum()))
        clash = labels[pool[other]] == y
    x = torch.maximum(_place(images[idx], rng), HARD_DISTRACTOR * _place(images[pool[other]], rng))
    x = x + HARD_NOISE * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    return x, y


def _hard_split(images: np.ndarray, labels: np.ndarray, cfg: DataConfig) -> tuple[torch.Tensor, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The hard digits: originals split first (``val_fraction`` of them for validation), then drawn."""
    n = len(labels)
    perm = np.random.RandomState(cfg.seed).permutation(n)
    n_val_orig = min(n - 1, max(1, int(round(n * cfg.val_fraction))))
    tr_pool, va_pool = perm[n_val_orig:], perm[:n_val_orig]
    n_train = cfg.train if cfg.train is not None else len(tr_pool)
    n_val = cfg.val if cfg.val is not None else len(va_pool)
    # distinct streams for the two splits, so that the validation set does not change with 'train'
    xt, yt = _hard_digits(images, labels, tr_pool, n_train, cfg.seed * 2 + 1)
    xv, yv = _hard_digits(images, labels, va_pool, n_val, cfg.seed * 2 + 2)
    return torch.cat([xt, xv]), np.concatenate([yt, yv]), (np.arange(n_train), np.arange(n_train, n_train + n_val))


def _glyph_split(cfg: DataConfig, hw: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The glyphs at ``hw``: ``train`` then ``val`` samples from separate seeded streams, and the two index ranges."""
    n_train = cfg.train if cfg.train is not None else GLYPHS_TRAIN
    n_val = cfg.val if cfg.val is not None else GLYPHS_VAL
    # distinct streams for the two splits, so that the validation set does not change with 'train';
    # drawn at the model's size, so the loader's resize is a no-op
    xt, yt = render_glyphs(n_train, hw, cfg.seed * 2 + 1)
    xv, yv = render_glyphs(n_val, hw, cfg.seed * 2 + 2)
    return torch.cat([xt, xv]), np.concatenate([yt, yv]), (np.arange(n_train), np.arange(n_train, n_train + n_val))


def _read_image(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"reading '{path.name}' needs Pillow, which is not installed",
                        hint="pip install pillow, or store the images as .npy arrays") from None
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / 255.0


def _to_nchw(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim == 4:
        if arr.shape[1] not in (1, 3, 4) and arr.shape[3] in (1, 3, 4):
            return arr.transpose(0, 3, 1, 2)
        return arr
    raise DataError(f"{what}: images must be N×H×W, N×C×H×W or N×H×W×C, got shape {list(arr.shape)}")


def _folder(root: Path, task: str) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if task == "depth":
        if set(classes) != {"live", "spoof"}:
            raise DataError(f"data folder '{root}' must hold exactly the sub-folders 'live' and 'spoof' for the depth task, found {classes}")
        classes = ["spoof", "live"]  # label 1 = live
    if len(classes) < 2:
        raise DataError(f"data folder '{root}' needs at least two class sub-folders, found {classes}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for k, c in enumerate(classes):
        files = sorted(f for f in (root / c).iterdir() if f.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"))
        if not files:
            raise DataError(f"class folder '{root / c}' holds no images (.npy or {', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            img = _read_image(f)
            if img.ndim == 3 and img.shape[0] not in (1, 3, 4) and img.shape[2] in (1, 3, 4):
                img = img.transpose(2, 0, 1)
            images.append(img if img.ndim == 3 else img[None])
            labels.append(k)
    return images, np.asarray(labels, dtype=np.int64), classes


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=x.shape[-1] > hw[-1])


def _fit_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1).contiguous()
    if c == 1:
        return x.mean(1, keepdim=True)
    raise DataError(f"the data has {x.shape[1]} channels and the model takes {c}")


def depth_targets(images: torch.Tensor, live: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Depth maps N×h×w: the (channel-mean) intensity of live images resized to ``hw``, zeros for spoofs."""
    gray = images.mean(1, keepdim=True)
    maps = _resize(gray, hw)[:, 0]
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    maps = (maps - lo) / (hi - lo).clamp_min(1e-6)
    return maps * live.view(-1, 1, 1).to(maps.dtype)


def _split(n: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(cfg.seed).permutation(n)
    n_val = cfg.val if cfg.val is not None else max(1, int(round(n * cfg.val_fraction)))
    n_train = cfg.train if cfg.train is not None else n - n_val
    if n_val + n_train > n:
        raise DataError(f"the data set has {n} samples; {n_train} for training and {n_val} for validation do not fit",
                        hint="lower 'train'/'val' in the evaluator's data")
    return perm[n_val:n_val + n_train], perm[:n_val]


def load_data(cfg: DataConfig, task: str, input_shape: tuple[int, int, int], output_hw: tuple[int, int] | None = None) -> ProxyData:
    """The proxy data for ``task`` at ``input_shape`` (C, H, W); ``output_hw`` sizes depth maps. Cached."""
    key = (cfg.source, str(cfg.path), cfg.train, cfg.val, cfg.val_fraction, cfg.seed, cfg.hard, task, tuple(input_shape), output_hw)
    if key in _CACHE:
        return _CACHE[key]
    c, h, w = input_shape
    depth: np.ndarray | None = None
    desc = ""
    if cfg.source == "digits":
        imgs, labels = _digits()
        if cfg.hard:
            x_all, labels, splits = _hard_split(imgs, labels, cfg)
            desc = (f"hard scikit-learn digits ({HARD_CANVAS}×{HARD_CANVAS}: rotated, scaled, shifted, "
                    "with a distractor digit and noise)")
        else:
            x_all = torch.from_numpy(imgs)[:, None]
            desc = "scikit-learn digits (8×8)"
            splits = _split(len(labels), cfg)
        classes = 10
        if task == "depth":
            labels = (labels < 5).astype(np.int64)  # live = digits 0–4
            classes = 2
            desc += ", live = 0–4 with intensity depth maps, spoof = 5–9 with zero maps"
    elif cfg.source == "glyphs":
        if task != "classification":
            raise DataError(f"the glyphs are a classification task; the '{task}' task needs other data",
                            hint="use 'source: digits' (its depth variant), 'folder' or 'npz'")
        x_all, labels, splits = _glyph_split(cfg, (h, w))
        classes = GLYPH_CLASSES
        desc = f"glyphs ({GLYPH_CLASSES} stroke figures among clutter, drawn at {h}×{w})"
    elif cfg.source == "folder":
        assert cfg.path is not None
        images, labels, names = _folder(cfg.path, task)
        x_all = torch.cat([_fit_channels(_resize(torch.from_numpy(np.ascontiguousarray(im)).float()[None], (h, w)), c)
                           for im in images])
        classes = len(names)
        desc = f"image folder {cfg.path} ({', '.join(names)})"
        splits = _split(len(labels), cfg)
    else:
        assert cfg.path is not None
        try:
            z = np.load(cfg.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read '{cfg.path}': {exc}") from None
        keys = set(z.files)
        if {"x_train", "y_train", "x_val", "y_val"} <= keys:
            xt, xv = _to_nchw(z["x_train"].astype(np.float32), "x_train"), _to_nchw(z["x_val"].astype(np.float32), "x_val")
            x_all = torch.from_numpy(np.concatenate([xt, xv]))
            labels = np.concatenate([z["y_train"], z["y_val"]]).astype(np.int64)
            splits = (np.arange(len(xt)), np.arange(len(xt), len(xt) + len(xv)))
            if "depth_train" in keys and "depth_val" in keys:
                depth = np.concatenate([z["depth_train"], z["depth_val"]]).astype(np.float32)
        elif {"x", "y"} <= keys:
            x_all = torch.from_numpy(_to_nchw(z["x"].astype(np.float32), "x"))
            labels = z["y"].astype(np.int64)
            splits = _split(len(labels), cfg)
            if "depth" in keys:
                depth = z["depth"].astype(np.float32)
        else:
            raise DataError(f"'{cfg.path}' must hold arrays x, y (and optionally depth) or x_train, y_train, x_val, y_val",
                            hint=f"it holds: {', '.join(sorted(keys)) or 'nothing'}")
        if len(labels) != len(x_all):
            raise DataError(f"'{cfg.path}': {len(x_all)} images but {len(labels)} labels")
        classes = int(labels.max()) + 1 if task == "classification" else 2
        if task == "depth" and not set(np.unique(labels)) <= {0, 1}:
            raise DataError(f"'{cfg.path}': depth-task labels must be 1 (live) or 0 (spoof)")
        desc = f"arrays {cfg.path.name}"
    x_all = _resize(x_all.float(), (h, w))
    tr, va = (torch.from_numpy(np.asarray(s, dtype=np.int64)) for s in splits)
    # gray data for a model of c > 1 channels is kept once, as a view that repeats it c times (a third of
    # the memory for RGB models); the statistics are taken over the c channels, as the model sees them
    shared = x_all.shape[1] == 1 and c > 1
    if not shared:
        x_all = _fit_channels(x_all, c)
    train_c = _fit_channels(x_all[tr], c)
    mean, std = train_c.mean(), train_c.std().clamp_min(1e-6)
    del train_c

    def split(idx: torch.Tensor) -> torch.Tensor:
        part = (x_all[idx] - mean) / std  # elementwise: the same values as normalizing all c channels
        return part.expand(-1, c, -1, -1) if shared else part.contiguous()

    y_all = torch.from_numpy(labels)
    live = None
    if task == "depth":
        assert output_hw is not None
        live = y_all.float()
        if depth is not None:
            y_maps = _resize(torch.from_numpy(depth)[:, None], output_hw)[:, 0]
        elif cfg.source == "folder":
            y_maps = live.view(-1, 1, 1).expand(-1, *output_hw).contiguous()
        else:
            y_maps = depth_targets(_fit_channels(x_all, c), live, output_hw)
        data = ProxyData(task, split(tr), y_maps[tr].contiguous(), split(va), y_maps[va].contiguous(),
                         2, live[tr], live[va], desc)
    else:
        data = ProxyData(task, split(tr), y_all[tr], split(va), y_all[va], classes, description=desc)
    _CACHE[key] = data
    return data
