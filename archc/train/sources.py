"""Data sources by name: ``digits`` (bundled), ``glyphs`` (generated), a ``.npz`` file or an image folder.

``digits``, ``glyphs`` and ``.npz`` arrays load into memory (:class:`~archc.train.data.TensorData`) through the
search's proxy-data loader (:func:`archc.search.data.load_data`: resized to the model's input,
standardized with the training split's statistics, a seeded split); image folders are read from disk
by DataLoader workers (:mod:`archc.train.images`).
"""

from __future__ import annotations

from pathlib import Path

from archc.diagnostics import ArchcError
from archc.train.data import DatasetData, TensorData
from archc.train.errors import TrainError

__all__ = ["load_source", "describe_source"]


def describe_source(source: str) -> str:
    """``digits``, ``glyphs``, ``npz`` or ``folder`` — the kind of a data source string (raises when it names nothing)."""
    if source in ("digits", "glyphs"):
        return source
    path = Path(source)
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix.lower() == ".npz":
        return "npz"
    if path.is_file():
        raise TrainError(f"data source '{source}' is a file but not a .npz archive",
                         hint="give digits, glyphs, a .npz file (arrays x, y) or an image folder")
    raise TrainError(f"data source '{source}' does not exist", hint="give digits, glyphs, a .npz file (arrays x, y) or an image folder")


def load_source(source: str, task: str, input_shape: tuple[int, int, int], out_hw: tuple[int, int] | None = None, *,
                val_fraction: float = 0.2, seed: int = 0, depth: str | Path | None = None) -> TensorData | DatasetData:
    """The data of ``source`` for a model taking ``input_shape`` (C, H, W) and (depth task) producing ``out_hw`` maps.

    >>> load_source("digits", "classification", (1, 8, 8)).sizes   # doctest: +SKIP
    (1438, 359)
    """
    kind = describe_source(source)
    if depth is not None and (kind != "folder" or task != "depth"):
        raise TrainError("a depth folder goes with an image folder and the depth task",
                         hint="drop --depth, or train --task depth on a folder with live/ and spoof/")
    if kind == "folder":
        from archc.train.images import image_folder_data

        return image_folder_data(source, task, input_shape, out_hw, val_fraction=val_fraction, seed=seed, depth_root=depth)
    from archc.search.data import load_data
    from archc.search.space import DataConfig

    cfg = DataConfig(kind, Path(source) if kind == "npz" else None, val_fraction=val_fraction, seed=seed)
    try:
        return load_data(cfg, task, input_shape, out_hw)
    except TrainError:
        raise
    except ArchcError as exc:  # the loader's DataError: same message, reported as a training error
        raise TrainError(exc.message, hint=exc.hint) from None
