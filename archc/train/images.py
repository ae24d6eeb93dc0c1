"""Image folders on disk as training data (PNG/JPEG/... read with Pillow, decoded in DataLoader workers).

Layouts (``ROOT`` is the folder given as the data source)::

    ROOT/train/<class>/**/*.png   ROOT/val/<class>/**/*.png     given splits
    ROOT/<class>/**/*.png                                         a seeded split (val_fraction, seed)

Classes are the sorted sub-folder names. The ``depth`` task (face anti-spoofing) needs exactly the
classes ``live`` and ``spoof``: spoof targets are zero maps; live targets are the depth maps of a depth
folder when one is given — ``DEPTH`` mirrors ``ROOT``: the map of ``ROOT/<rel>/x.jpg`` is
``DEPTH/<rel>/x.<png|jpg|...|npy>`` (8-bit images scaled to [0, 1], ``.npy`` arrays as they are) —
and all-ones maps otherwise. Targets are resized to the model's output map size after the same crop
and flip as their image (see :mod:`archc.train.augment`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from archc.train.augment import MEAN, STD, Crop, apply_crop, center_crop, normalize, random_resized_crop, to_tensor
from archc.train.data import DatasetData
from archc.train.errors import TrainError

__all__ = ["IMAGE_SUFFIXES", "ImageSplit", "ImageDataset", "scan_image_folder", "image_folder_data"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: training images scored (without augmentation) to choose the liveness threshold of the depth task
CALIBRATION = 2048


@dataclass
class ImageSplit:
    """The files of one split, their class labels and (depth task) their depth-map files (None: no map)."""

    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    depth: list[Path | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, idx: Sequence[int]) -> ImageSplit:
        return ImageSplit([self.files[i] for i in idx], [self.labels[i] for i in idx], [self.depth[i] for i in idx])


def _require_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise TrainError("reading image folders needs Pillow, which is not installed",
                         hint="pip install 'archc[train]' (or: pip install pillow)") from None


def _class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_split(root: Path, classes: list[str]) -> ImageSplit:
    split = ImageSplit()
    for k, c in enumerate(classes):
        folder = root / c
        if not folder.is_dir():
            raise TrainError(f"class folder '{folder}' is missing (the classes are {', '.join(classes)})",
                             hint="every split needs the same class sub-folders")
        files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TrainError(f"class folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})",
                             hint="put PNG/JPEG files in one sub-folder per class")
        split.files += files
        split.labels += [k] * len(files)
        split.depth += [None] * len(files)
    return split


def _attach_depth(splits: Sequence[ImageSplit], root: Path, depth_root: Path, live: int) -> None:
    index: dict[str, Path] = {}
    for f in depth_root.rglob("*"):
        if f.is_file() and f.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"):
            index.setdefault(f.relative_to(depth_root).with_suffix("").as_posix(), f)
    missing = []
    for split in splits:
        for i, (f, lab) in enumerate(zip(split.files, split.labels)):
            if lab != live:
                continue
            rel = f.relative_to(root).with_suffix("").as_posix()
            if rel in index:
                split.depth[i] = index[rel]
            else:
                missing.append(rel)
    if missing:
        missing.sort()
        raise TrainError(f"depth folder '{depth_root}' has no map for {len(missing)} live image(s), e.g. '{missing[0]}.*'",
                         hint="the depth folder mirrors the image folder: same relative path, any image suffix or .npy")


def scan_image_folder(root: str | Path, task: str, *, val_fraction: float = 0.2, seed: int = 0,
                      depth_root: str | Path | None = None) -> tuple[ImageSplit, ImageSplit, list[str]]:
    """The training and validation files of an image folder and its class names (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise TrainError(f"data folder '{root}' does not exist", hint="give digits, glyphs, a .npz file or an image folder")
    given = (root / "train").is_dir() and (root / "val").is_dir()
    classes = _class_dirs(root / "train" if given else root)
    if task == "depth":
        if set(classes) != {"live", "spoof"}:
            raise TrainError(f"data folder '{root / 'train' if given else root}' must hold exactly the sub-folders 'live' and "
                             f"'spoof' for the depth task, found {classes or 'none'}")
        classes = ["spoof", "live"]  # label 1 = live
    elif len(classes) < 2:
        raise TrainError(f"data folder '{root}' needs at least two class sub-folders, found {classes or 'none'}",
                         hint="one sub-folder per class (or train/ and val/ folders holding them)")
    if given:
        train, val = _scan_split(root / "train", classes), _scan_split(root / "val", classes)
    else:
        both = _scan_split(root, classes)
        perm = np.random.RandomState(seed).permutation(len(both))
        n_val = max(1, int(round(len(both) * val_fraction)))
        if n_val >= len(both):
            raise TrainError(f"data folder '{root}' holds {len(both)} images: too few to split off {n_val} for validation")
        train, val = both.subset(sorted(perm[n_val:])), both.subset(sorted(perm[:n_val]))
    if task == "depth" and depth_root is not None:
        depth_root = Path(depth_root)
        if not depth_root.is_dir():
            raise TrainError(f"depth folder '{depth_root}' does not exist")
        _attach_depth((train, val), root, depth_root, live=1)
    return train, val, classes


def _open(path: Path, mode: str):  # noqa: ANN202 - a Pillow image
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert(mode)
    except (OSError, UnidentifiedImageError) as exc:
        raise TrainError(f"cannot read image '{path}': {exc}", hint="remove or replace the file") from None


def _depth_image(path: Path):  # noqa: ANN202 - a Pillow image of mode F (values as stored; 8-bit scaled to [0, 1])
    from PIL import Image

    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        arr = arr[0] if arr.ndim == 3 else arr
        if arr.ndim != 2:
            raise TrainError(f"depth map '{path}' must be H×W, got shape {list(arr.shape)}")
    else:
        im = _open(path, "L")
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))  # float32 H×W → mode F


class ImageDataset(Dataset):
    """Items ``(image C×H×W float32, target)`` of an :class:`ImageSplit`.

    ``train`` picks the augmentation (random resized crop + flip) over the deterministic resize + centre
    crop. Targets: the class index (classification) or a depth map ``out_hw`` (depth).
    """

    def __init__(self, split: ImageSplit, channels: int, size: tuple[int, int], train: bool, task: str = "classification",
                 out_hw: tuple[int, int] | None = None) -> None:
        if channels not in MEAN:
            raise TrainError(f"image folders feed 1- or 3-channel models; this model takes {channels} channels")
        if task == "depth" and out_hw is None:
            raise TrainError("the depth task needs the model's output map size")
        self.split, self.channels, self.size, self.train, self.task, self.out_hw = split, channels, size, train, task, out_hw
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        img = _open(self.split.files[i], self.mode)
        h, w = self.size
        crop: Crop = random_resized_crop(*img.size, w, h) if self.train else center_crop(*img.size, w, h)
        x = normalize(to_tensor(apply_crop(img, crop, w, h)), MEAN[self.channels], STD[self.channels])
        label = self.split.labels[i]
        if self.task != "depth":
            return x, label
        assert self.out_hw is not None
        oh, ow = self.out_hw
        if label == 0:
            return x, torch.zeros(oh, ow)
        dpath = self.split.depth[i]
        if dpath is None:
            return x, torch.ones(oh, ow)
        return x, to_tensor(apply_crop(_depth_image(dpath), crop, ow, oh))[0]


def image_folder_data(root: str | Path, task: str, input_shape: tuple[int, int, int], out_hw: tuple[int, int] | None = None,
                      *, val_fraction: float = 0.2, seed: int = 0, depth_root: str | Path | None = None) -> DatasetData:
    """An image folder as :class:`DatasetData` for a model taking ``input_shape`` (C, H, W)."""
    _require_pillow()
    train, val, classes = scan_image_folder(root, task, val_fraction=val_fraction, seed=seed, depth_root=depth_root)
    c, h, w = input_shape
    ds_train = ImageDataset(train, c, (h, w), True, task, out_hw)
    ds_val = ImageDataset(val, c, (h, w), False, task, out_hw)
    desc = f"image folder {root} ({', '.join(classes)})"
    if task != "depth":
        return DatasetData(task, ds_train, ds_val, len(classes), description=desc)
    assert out_hw is not None
    desc += ", depth maps from " + str(depth_root) if depth_root is not None else ", live targets all-ones maps"
    # the liveness threshold is chosen on up to CALIBRATION training images (fixed, spread over the split,
    # without augmentation): scoring the whole training split every epoch would cost a third of an epoch
    idx = np.linspace(0, len(train) - 1, num=min(CALIBRATION, len(train))).round().astype(int).tolist()
    calib = train.subset(sorted(set(idx)))
    return DatasetData(task, ds_train, ds_val, 2, live_val=torch.tensor(val.labels, dtype=torch.float32),
                       calibration=ImageDataset(calib, c, (h, w), False, task, out_hw),
                       calibration_live=torch.tensor(calib.labels, dtype=torch.float32), description=desc)
