"""Fixtures for the trainer tests: small specs, learnable in-memory data, image folders written with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from archc.compiler import CompileOptions, compile_spec
from archc.passes.equivalence import module_from_source
from archc.train.data import TensorData

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL = FIXTURES / "small.yaml"
DEPTH = FIXTURES / "depth.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def spec_source(spec: Path = SMALL, params: Sequence[str] = ()) -> str:
    """Generated module source of a fixture spec."""
    return compile_spec(spec, CompileOptions(params=list(params))).source


def build(source: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return module_from_source(source).create_model()


def textures(n: int = 96, classes: int = 4, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy textures whose class is the pattern (flat, horizontal/vertical stripes, checkerboard)."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % classes
    r, c = np.mgrid[0:size, 0:size]
    patterns = [np.zeros((size, size)), (r % 2).astype(float), (c % 2).astype(float), ((r + c) % 2).astype(float)]
    x = rng.rand(n, size, size).astype(np.float32) * 0.4
    for i, k in enumerate(y):
        x[i] += patterns[int(k) % 4].astype(np.float32)
    return x, y.astype(np.int64)


def tensor_data(n_train: int = 96, n_val: int = 32, seed: int = 0) -> TensorData:
    x, y = textures(n_train + n_val, seed=seed)
    xt = torch.from_numpy(x)[:, None]
    xt = (xt - xt.mean()) / xt.std()
    yt = torch.from_numpy(y)
    return TensorData("classification", xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:], 4)


def write_images(root: Path, classes: Sequence[str], per_class: int, size: int = 12, mode: str = "RGB",
                 suffix: str = ".png", seed: int = 0) -> list[Path]:
    """Class-patterned noisy images (class k: stripes of period k + 2) written with Pillow."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    r, c = np.mgrid[0:size, 0:size]
    out = []
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = ((c // (k + 1)) % 2).astype(np.float32) * 180 + rng.rand(size, size) * 60
            arr = np.clip(base, 0, 255).astype(np.uint8)
            if mode == "RGB":
                arr = np.stack([arr, arr[::-1], arr.T], axis=-1)
            path = folder / f"img{i:03d}{suffix}"
            Image.fromarray(arr).save(path)
            out.append(path)
    return out
