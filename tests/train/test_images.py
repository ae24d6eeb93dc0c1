"""Image folders: layouts, splits, augmentation, depth-map targets aligned with their images, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from archc.train.augment import Crop, apply_crop, center_crop, random_resized_crop
from archc.train.errors import TrainError
from archc.train.images import ImageDataset, image_folder_data, scan_image_folder

from .conftest import write_images

PIL = pytest.importorskip("PIL")


def test_layouts_and_seeded_split(tmp_path: Path) -> None:
    write_images(tmp_path / "flat", ["cat", "dog", "eel"], 10)
    tr, va, classes = scan_image_folder(tmp_path / "flat", "classification", val_fraction=0.2, seed=0)
    assert classes == ["cat", "dog", "eel"] and (len(tr), len(va)) == (24, 6)
    assert not set(tr.files) & set(va.files)
    tr2, va2, _ = scan_image_folder(tmp_path / "flat", "classification", val_fraction=0.2, seed=0)
    assert va2.files == va.files and tr2.labels == tr.labels
    _, va3, _ = scan_image_folder(tmp_path / "flat", "classification", val_fraction=0.2, seed=1)
    assert va3.files != va.files
    write_images(tmp_path / "given" / "train", ["a", "b"], 5, suffix=".jpg")
    write_images(tmp_path / "given" / "val", ["a", "b"], 2, suffix=".jpg")
    tr, va, classes = scan_image_folder(tmp_path / "given", "classification")
    assert classes == ["a", "b"] and (len(tr), len(va)) == (10, 4) and va.labels == [0, 0, 1, 1]


def test_dataset_items(tmp_path: Path) -> None:
    write_images(tmp_path, ["a", "b"], 4, size=20)
    data = image_folder_data(tmp_path, "classification", (3, 16, 16), val_fraction=0.25)
    x, y = data.val[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(data.val[0][0], x)  # validation: deterministic resize + centre crop
    gray = image_folder_data(tmp_path, "classification", (1, 12, 12), val_fraction=0.25)
    assert gray.train[0][0].shape == (1, 12, 12)
    torch.manual_seed(0)
    a = data.train[0][0]
    torch.manual_seed(0)
    assert torch.equal(data.train[0][0], a)  # augmentation draws from torch's RNG (seeded per worker)
    torch.manual_seed(1)
    assert not torch.equal(data.train[0][0], a)


def test_random_resized_crop_stays_inside_and_varies() -> None:
    torch.manual_seed(0)
    crops = [random_resized_crop(40, 30, 16, 16) for _ in range(200)]
    for c in crops:
        assert 0 <= c.left and 0 <= c.top and c.left + c.width <= 1 + 1e-9 and c.top + c.height <= 1 + 1e-9
        area = c.width * c.height
        assert 0.08 - 0.02 <= area <= 1.0
    assert 0.3 < np.mean([c.flip for c in crops]) < 0.7
    assert len({(c.left, c.width) for c in crops}) > 100
    cc = center_crop(40, 30, 16, 16)
    assert cc == Crop(cc.left, cc.top, cc.width, cc.height) and abs(cc.height - 0.875) < 1e-9 and not cc.flip


def test_depth_targets_follow_the_crop_and_flip_of_their_image(tmp_path: Path) -> None:
    """A live image whose depth map is its own (gray) intensity: after any crop/flip the target is the image."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, n in (("live", 6), ("spoof", 4)):
        (tmp_path / "img" / split).mkdir(parents=True)
        for i in range(n):
            arr = (rng.rand(32, 32) * 255).astype(np.uint8)
            arr[:, :16] //= 4  # a dark left half: flips are visible
            Image.fromarray(np.stack([arr] * 3, -1)).save(tmp_path / "img" / split / f"f{i}.png")
            if split == "live":
                (tmp_path / "depth" / split).mkdir(parents=True, exist_ok=True)
                np.save(tmp_path / "depth" / split / f"f{i}.npy", arr.astype(np.float32) / 255.0)
    data = image_folder_data(tmp_path / "img", "depth", (3, 16, 16), (16, 16), val_fraction=0.2, depth_root=tmp_path / "depth")
    assert data.classes == 2 and data.live_val is not None and data.calibration is not None
    assert len(data.calibration) == len(data.train) and data.calibration_live is not None  # type: ignore[arg-type]
    assert data.calibration_live.tolist() == [float(v) for v in data.train.split.labels]  # type: ignore[attr-defined]
    torch.manual_seed(0)
    ds = data.train
    assert isinstance(ds, ImageDataset)
    for i in range(len(ds)):
        x, y = ds[i]
        assert y.shape == (16, 16)
        if ds.split.labels[i] == 0:
            assert not y.any()  # spoof: zero map
        else:  # the target is the un-normalized gray image of the same crop
            img = x * 0.229 + 0.485
            assert torch.allclose(y, img[0], atol=0.02)
    ones = image_folder_data(tmp_path / "img", "depth", (3, 16, 16), (4, 4), val_fraction=0.2)
    live = [i for i in range(len(ones.train)) if ones.train.split.labels[i] == 1]  # type: ignore[attr-defined]
    assert torch.equal(ones.train[live[0]][1], torch.ones(4, 4))


def test_apply_crop_resizes_the_box() -> None:
    from PIL import Image

    arr = np.zeros((10, 20), dtype=np.uint8)
    arr[:, 10:] = 200
    img = Image.fromarray(arr)
    right = np.asarray(apply_crop(img, Crop(0.5, 0.0, 0.5, 1.0), 4, 4))
    assert (right == 200).all()
    flipped = np.asarray(apply_crop(img, Crop(0.0, 0.0, 1.0, 1.0, True), 4, 2))
    assert (flipped[:, 0] == 200).all() and (flipped[:, 3] == 0).all()  # the bright right half is now on the left


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="does not exist"):
        scan_image_folder(tmp_path / "nope", "classification")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(TrainError, match="holds no images"):
        scan_image_folder(tmp_path, "classification")
    write_images(tmp_path / "two", ["live", "other"], 3)
    with pytest.raises(TrainError, match="exactly the sub-folders 'live' and 'spoof'"):
        scan_image_folder(tmp_path / "two", "depth")
    write_images(tmp_path / "as", ["live", "spoof"], 3)
    (tmp_path / "dm" / "live").mkdir(parents=True)
    np.save(tmp_path / "dm" / "live" / "img000.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(TrainError, match="no map for 2 live image"):
        scan_image_folder(tmp_path / "as", "depth", depth_root=tmp_path / "dm")
    write_images(tmp_path / "one", ["only"], 3)
    with pytest.raises(TrainError, match="at least two class sub-folders"):
        scan_image_folder(tmp_path / "one", "classification")
    bad = write_images(tmp_path / "bad", ["a", "b"], 3)
    bad[0].write_bytes(b"not a png")
    data = image_folder_data(tmp_path / "bad", "classification", (3, 8, 8), val_fraction=0.01)
    idx = data.train.split.files.index(bad[0])  # type: ignore[attr-defined]
    with pytest.raises(TrainError, match="cannot read image"):
        data.train[idx]
