"""The generated glyphs (``data: {source: glyphs}``): deterministic, drawn at the model's size, parsed, refused for depth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from archc.search import data as pdata
from archc.search import load_data
from archc.search.glyphs import CLASSES, prototypes, render_glyphs
from archc.search.space import DataConfig, load_space

from .conftest import DATA_SPACE, assert_load_error_at, write_space

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]


def _glyphs(train: int, val: int, seed: int = 0, shape: tuple[int, int, int] = (1, 32, 32)) -> pdata.ProxyData:
    return load_data(DataConfig("glyphs", None, train, val, 0.2, seed), "classification", shape)


@pytest.mark.parametrize("hw", [(32, 32), (30, 30), (17, 23), (64, 64)])
def test_the_drawing_chunk_changes_no_value(monkeypatch: pytest.MonkeyPatch, hw: tuple[int, int]) -> None:
    """Chunks are sized for speed only: one sample at a time and many at once draw the same bits."""
    import archc.search.glyphs as glyphs

    ref, _ = render_glyphs(37, hw, 5)
    for terms in (1, 1 << 16, 1 << 30):  # one sample per chunk, a few, all in one
        monkeypatch.setattr(glyphs, "_CHUNK_TERMS", terms)
        assert torch.equal(render_glyphs(37, hw, 5)[0], ref), terms


def test_gray_data_for_an_rgb_model_is_stored_once() -> None:
    """The three channels are one stored plane seen three times, normalized by the statistics of all three."""
    pdata._CACHE.clear()
    d = _glyphs(300, 100, shape=(3, 32, 32))
    assert d.x_train.shape == (300, 3, 32, 32) and d.x_train.untyped_storage().nbytes() == 300 * 32 * 32 * 4
    assert d.x_val.untyped_storage().nbytes() == 100 * 32 * 32 * 4
    x, _ = render_glyphs(300, (32, 32), 1)  # the train stream of seed 0
    rgb = x.expand(-1, 3, -1, -1).contiguous()
    assert torch.equal(d.x_train, (rgb - rgb.mean()) / rgb.std())
    batch = d.x_train.index_select(0, torch.tensor([5, 2]))
    assert batch.is_contiguous() and torch.equal(batch[:, 0], batch[:, 2])


def test_glyphs_are_deterministic_distinct_and_sized_by_the_config() -> None:
    pdata._CACHE.clear()
    d = _glyphs(600, 200)
    assert d.x_train.shape == (600, 1, 32, 32) and d.x_val.shape == (200, 1, 32, 32) and d.classes == CLASSES
    assert set(d.y_train.tolist()) == set(range(CLASSES)) and set(d.y_val.tolist()) == set(range(CLASSES))
    pdata._CACHE.clear()
    again = _glyphs(600, 200)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_val, d.y_val)
    assert not torch.equal(_glyphs(600, 200, seed=1).x_train, d.x_train)
    # no sample repeats another, and validation is not a copy of training
    flat_t, flat_v = d.x_train.flatten(1), d.x_val.flatten(1)
    dist = torch.cdist(flat_t, flat_t) + torch.eye(len(flat_t)) * 1e9
    assert dist.min() > 1.0 and torch.cdist(flat_v, flat_t).min() > 1.0


def test_glyphs_are_drawn_at_the_model_resolution() -> None:
    # the same figures at two sizes (the random draws do not depend on the size): the larger one pooled
    # down matches the smaller one up to the pixel noise, and it is not an upsampled copy of it
    small, _ = render_glyphs(64, (16, 16), 3)
    big, _ = render_glyphs(64, (32, 32), 3)
    pooled = F.avg_pool2d(big, 2)
    corr = torch.corrcoef(torch.stack([pooled.flatten(), small.flatten()]))[0, 1]
    assert corr > 0.6, corr
    up = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    assert (big - up).abs().mean() > 0.1
    d = _glyphs(40, 20, shape=(3, 48, 48))
    assert d.x_train.shape == (40, 3, 48, 48)


def test_glyph_classes_carry_signal_that_template_matching_does_not_solve() -> None:
    d = _glyphs(2000, 1000)
    a, b = d.x_train.flatten(1), d.x_val.flatten(1)
    means = torch.stack([a[d.y_train == c].mean(0) for c in range(CLASSES)])
    acc = float((torch.cdist(b, means).argmin(1) == d.y_val).float().mean())
    assert 0.4 < acc < 0.75, acc  # well above chance (0.1), far from what a trained network reaches (0.82-0.89)
    protos = prototypes()
    assert protos.shape == (CLASSES, 3, 3, 2) and abs(protos).max() <= 0.8


def test_space_file_parses_glyphs(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, DATA_SPACE, task="classification", data="{source: glyphs, train: 64, val: 32}"))
    assert space.evaluator.data.source == "glyphs" and space.evaluator.data.train == 64


@pytest.mark.parametrize(("task", "data", "match", "line"), [
    ("depth", "{source: glyphs}", "the glyphs are a classification task", 10),
    ("classification", "{source: glyphs, path: x}", "the glyphs are generated: 'path' does not apply", 10),
    ("classification", "{source: glyphs, hard: true}", "'hard' makes a harder variant of the bundled digits", 10),
])
def test_glyph_errors_are_positioned(tmp_path: Path, task: str, data: str, match: str, line: int) -> None:
    assert_load_error_at(write_space(tmp_path, DATA_SPACE, task=task, data=data), line, match)


def test_schema_accepts_glyphs() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "search_space.schema.json").read_text(encoding="utf-8"))
    data_schema = schema["$defs"]["evaluator"]["properties"]["data"]
    assert not list(jsonschema.Draft202012Validator(data_schema).iter_errors({"source": "glyphs", "train": 100}))


def test_the_trainer_takes_glyphs_by_name() -> None:
    from archc.train.errors import TrainError
    from archc.train.sources import describe_source, load_source

    assert describe_source("glyphs") == "glyphs"
    d = load_source("glyphs", "classification", (3, 16, 16), seed=2)
    assert d.sizes == (pdata.GLYPHS_TRAIN, pdata.GLYPHS_VAL) and d.x_train.shape[1:] == (3, 16, 16)
    with pytest.raises(TrainError, match="the glyphs are a classification task"):
        load_source("glyphs", "depth", (3, 16, 16), (4, 4))
