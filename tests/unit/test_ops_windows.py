"""roll, index_select, the constant ops and sdpa over windows: rules against PyTorch, generated code, targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from archc.backends.pytorch.single import build_single

from archc.compiler import CompileOptions, compile_spec
from archc.diagnostics import ArchcError
from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from archc.targets import compile_target
from tests.artifact import import_source
from tests.unit.ops.harness import check, infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")
torch.set_num_threads(1)


def _built(name: str, attrs: dict, in_types: list[TensorType]) -> torch.nn.Module:
    return build_single(name, attrs, in_types)[0].eval()


# -- roll -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shifts,dims", [([-3, -3], [1, 2]), ([2], [-1]), ([5, -1, 0], [1, 2, 3])])
def test_roll_matches_torch_roll(shifts: list[int], dims: list[int]) -> None:
    r = check("roll", {"shifts": shifts, "dims": dims}, (2, 7, 6, 5))
    x = torch.randn(2, 7, 6, 5)
    assert torch.equal(r.module(x), torch.roll(x, shifts, dims))
    assert r.macs == 0 and r.params == 0


@pytest.mark.parametrize(
    "attrs,match",
    [
        ({"shifts": [1], "dims": [1, 2]}, "one shift per axis"),
        ({"shifts": [1], "dims": [0]}, "batch axis 0"),
        ({"shifts": [1, 1], "dims": [1, -3]}, "name an axis twice"),
        ({"shifts": [1], "dims": [4]}, "out of range"),
        ({"shifts": [], "dims": []}, "at least one axis"),
    ],
)
def test_roll_errors(attrs: dict, match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        infer("roll", attrs, ("B", 7, 6, 5))


# -- index_select and the constant tables ---------------------------------------------------------


def _swin_index(wh: int, ww: int) -> torch.Tensor:
    """Swin's relative position index, written the way the paper's code builds it (meshgrid, shift, scale)."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1)


@pytest.mark.parametrize("window", [7, (3, 5), 1])
def test_relative_position_index_is_swins(window) -> None:
    wh, ww = (window, window) if isinstance(window, int) else window
    (t,) = infer("relative_position_index", {"window": window})
    assert t == TensorType((wh * ww, wh * ww), "int64")
    got = _built("relative_position_index", {"window": window}, [])()
    assert got.dtype == torch.int64 and torch.equal(got, _swin_index(wh, ww))
    assert int(got.max()) == (2 * wh - 1) * (2 * ww - 1) - 1


def _swin_mask(h: int, w: int, win: int, shift: int) -> torch.Tensor:
    """timm's attention mask for shifted windows: slices (0, -win), (-win, -shift), (-shift, None), -100 between labels."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
        for ws in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = img.view(1, h // win, win, w // win, win, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win)
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


@pytest.mark.parametrize("res,win,shift", [(56, 7, 3), (14, 7, 3), (8, 4, 2), (12, 4, 1)])
def test_shifted_window_mask_is_swins(res: int, win: int, shift: int) -> None:
    attrs = {"resolution": res, "window": win, "shift": shift}
    (t,) = infer("shifted_window_mask", attrs)
    nw = (res // win) ** 2
    assert t == TensorType((nw, 1, win * win, win * win))
    got = _built("shifted_window_mask", attrs, [])()
    assert torch.equal(got[:, 0], _swin_mask(res, res, win, shift))


def test_shifted_window_mask_without_shift_is_zero_and_errors() -> None:
    got = _built("shifted_window_mask", {"resolution": [8, 12], "window": 4, "shift": [0, 2]}, [])()
    assert got.shape == (6, 1, 16, 16)
    rows_only = _built("shifted_window_mask", {"resolution": [8, 12], "window": 4, "shift": [2, 0]}, [])()
    assert torch.equal((got != 0).sum(), (rows_only != 0).sum().new_tensor(int((got != 0).sum())))
    assert not torch.equal(got, rows_only)
    assert torch.count_nonzero(_built("shifted_window_mask", {"resolution": 8, "window": 4, "shift": 0}, [])()) == 0
    with pytest.raises(OpCheckError, match="must divide the resolution"):
        infer("shifted_window_mask", {"resolution": 10, "window": 4, "shift": 2})
    with pytest.raises(OpCheckError, match="must be smaller than the window"):
        infer("shifted_window_mask", {"resolution": 8, "window": 4, "shift": 4})


def test_sincos_pos_embed_is_maes() -> None:
    h, w, d = 3, 5, 16

    def one(pos: torch.Tensor) -> torch.Tensor:  # MAE's get_1d_sincos_pos_embed_from_grid
        omega = 1.0 / 10000 ** (torch.arange(d // 4, dtype=torch.float64) / (d / 4.0))
        out = pos.reshape(-1)[:, None] * omega[None, :]
        return torch.cat([out.sin(), out.cos()], dim=1)

    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ref = torch.cat([one(gx), one(gy)], dim=1).float()
    got = _built("sincos_pos_embed", {"grid": [h, w], "dim": d}, [])()
    assert got.shape == (1, h * w, d)
    torch.testing.assert_close(got[0], ref, rtol=0, atol=0)
    with pytest.raises(OpCheckError, match="divisible by 4"):
        infer("sincos_pos_embed", {"grid": 4, "dim": 18})


def test_constant_literal() -> None:
    (t,) = infer("constant", {"value": [[1, 2, 3], [4, 5, 6]], "dtype": "int64"})
    assert t == TensorType((2, 3), "int64")
    got = _built("constant", {"value": [[1.5, 2], [3, 4]]}, [])()
    assert torch.equal(got, torch.tensor([[1.5, 2.0], [3.0, 4.0]]))
    for value, dtype, match in [([[1, 2], [3]], "float32", "not rectangular"), ([1.5], "int64", "integer"),
                                (["a"], "float32", "numbers"), ([], "float32", "empty"), ([2], "bool", "true/false")]:
        with pytest.raises(OpCheckError, match=match):
            infer("constant", {"value": value, "dtype": dtype})
    with pytest.raises(OpCheckError, match="above the 65,536"):
        infer("constant", {"value": [0.0] * 70_000})


def test_index_select_any_index_shape_and_axis() -> None:
    table = torch.randn(3, 13)
    idx = torch.randint(0, 13, (4, 5))
    mod = _built("index_select", {"dim": 1}, [TensorType((3, 13)), TensorType((4, 5), "int64")])
    assert torch.equal(mod(table, idx), table[:, idx])
    x = torch.randn(2, 6, 13, 4)
    op = get_op("index_select")
    (t,) = op.infer(op.bind({"dim": 2}), [TensorType(("B", 6, 13, 4)), TensorType((4, 5), "int64")])
    assert t == TensorType(("B", 6, 4, 5, 4))
    mod = _built("index_select", {"dim": -2}, [TensorType(("B", 6, 13, 4)), TensorType((4, 5), "int64")])
    assert torch.equal(mod(x, idx), x[:, :, idx])
    assert torch.equal(torch.jit.script(mod)(x, idx), x[:, :, idx])
    flat = _built("index_select", {"dim": 0}, [TensorType((13, 3)), TensorType((7,), "int64")])
    assert torch.equal(flat(table.t(), idx[0, :].repeat(2)[:7]), table.t()[idx[0, :].repeat(2)[:7]])


@pytest.mark.parametrize(
    "shapes,dtype,dim,match",
    [
        ((("B", 6, 13), (4,)), "float32", 1, "needs an int64 index"),
        ((("B", 6, 13), (4,)), "int64", 0, "batch axis 0"),
        ((("B", 6, 13), ("B", 4)), "int64", 1, "fixed index"),
    ],
)
def test_index_select_errors(shapes, dtype: str, dim: int, match: str) -> None:
    op = get_op("index_select")
    with pytest.raises(OpCheckError, match=match):
        op.infer(op.bind({"dim": dim}), [TensorType(shapes[0]), TensorType(shapes[1], dtype)])


# -- sdpa over windows ----------------------------------------------------------------------------


def test_sdpa_rank5_windows_with_broadcast_bias() -> None:
    b, nw, h, n, d = 2, 4, 3, 9, 8
    q, k, v = (torch.randn(b, nw, h, n, d) for _ in range(3))
    bias = torch.randn(nw, h, n, n)
    (t,) = infer("sdpa", {}, ("B", nw, h, n, d), ("B", nw, h, n, d), ("B", nw, h, n, d), (nw, h, n, n))
    assert t.shape == ("B", nw, h, n, d)
    r = check("sdpa", {}, (b, nw, h, n, d), (b, nw, h, n, d), (b, nw, h, n, d), (nw, h, n, n))
    assert r.macs == b * nw * h * n * n * 2 * d
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(r.module(q, k, v, bias), ref)
    op = get_op("sdpa")
    with pytest.raises(OpCheckError, match="does not broadcast"):
        op.infer(op.bind({}), [TensorType((b, nw, h, n, d))] * 3 + [TensorType((nw + 1, 1, n, n))])
    with pytest.raises(OpCheckError, match="axes before"):
        op.infer(op.bind({}), [TensorType((b, nw, h, n, d)), TensorType((b, nw, h + 1, n, d)), TensorType((b, nw, h, n, d))])


# -- one window-attention spec through every target -----------------------------------------------

WINDOW_SPEC = """\
archc: 1
name: shifted_window
params: {res: 8, win: 4, shift: 2, dim: 16, heads: 2}
inputs:
  x: [B, "${res}", "${res}", "${dim}"]
blocks:
  window_attention:
    params: {res: int, win: int, shift: int, dim: int, heads: int}
    graph:
      - rolled: {op: roll, shifts: ["${-shift}", "${-shift}"], dims: [1, 2], when: "${shift > 0}"}
      - grid: {op: reshape, shape: "${[res // win, win, res // win, win, dim]}"}
      - wins: {op: permute, dims: [0, 1, 3, 2, 4, 5]}
      - tokens: {op: reshape, shape: "${[(res // win) ** 2, win * win, dim]}"}
      - qkv: {op: linear, out: "${3 * dim}"}
      - parts: {op: chunk, chunks: 3, dim: -1, names: [q, k, v]}
      - q: {op: reshape, in: parts.q, shape: "${[(res // win) ** 2, win * win, heads, dim // heads]}"}
      - qh: {op: transpose, dim0: 2, dim1: 3}
      - k: {op: reshape, in: parts.k, shape: "${[(res // win) ** 2, win * win, heads, dim // heads]}"}
      - kh: {op: transpose, dim0: 2, dim1: 3}
      - v: {op: reshape, in: parts.v, shape: "${[(res // win) ** 2, win * win, heads, dim // heads]}"}
      - vh: {op: transpose, dim0: 2, dim1: 3}
      - table: {op: param, shape: "${[heads, (2 * win - 1) ** 2]}", init: trunc_normal}
      - index: {op: relative_position_index, window: "${win}"}
      - bias: {op: index_select, in: [table, index], dim: 1}
      - mask: {op: shifted_window_mask, resolution: "${res}", window: "${win}", shift: "${shift}", when: "${shift > 0}"}
      - full_bias: {op: add, in: [bias, mask], when: "${shift > 0}"}
      - attn: {op: sdpa, in: [qh, kh, vh, full_bias]}
      - merged: {op: transpose, dim0: 2, dim1: 3}
      - flat: {op: reshape, shape: "${[res // win, res // win, win, win, dim]}"}
      - back: {op: permute, dims: [0, 1, 3, 2, 4, 5]}
      - image: {op: reshape, shape: "${[res, res, dim]}"}
      - unrolled: {op: roll, shifts: ["${shift}", "${shift}"], dims: [1, 2], when: "${shift > 0}"}
graph:
  - a: {op: window_attention, res: "${res}", win: "${win}", shift: 0, dim: "${dim}", heads: "${heads}"}
  - b: {op: window_attention, res: "${res}", win: "${win}", shift: "${shift}", dim: "${dim}", heads: "${heads}"}
"""


def _reference(model: torch.nn.Module, x: torch.Tensor, res: int, win: int, shift: int, dim: int, heads: int) -> torch.Tensor:
    """Window attention written directly (windows folded into the batch, as Swin's code does)."""
    for blk, s in ((model.a, 0), (model.b, shift)):
        b = x.shape[0]
        y = torch.roll(x, (-s, -s), (1, 2)) if s else x
        w = y.view(b, res // win, win, res // win, win, dim).permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win, dim)
        qkv = blk.qkv(w).reshape(w.shape[0], win * win, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)
        attn = attn + blk.table[:, _swin_index(win, win)].unsqueeze(0)
        if s:
            nw = (res // win) ** 2
            attn = attn.view(b, nw, heads, win * win, win * win) + _swin_mask(res, res, win, s).to(x.dtype)[None, :, None]
            attn = attn.view(-1, heads, win * win, win * win)
        o = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, win, win, dim)
        o = o.view(b, res // win, res // win, win, win, dim).permute(0, 1, 3, 2, 4, 5).reshape(b, res, res, dim)
        x = torch.roll(o, (s, s), (1, 2)) if s else o
    return x


def test_window_attention_spec_matches_reference_and_every_target(tmp_path: Path) -> None:
    spec = tmp_path / "shifted_window.yaml"
    spec.write_text(WINDOW_SPEC, encoding="utf-8")
    res = compile_spec(spec, CompileOptions())
    assert "Constant(shifted_window_mask(" in res.source and "Constant(relative_position_index(" in res.source
    module = import_source(res.source, tmp_path)
    model = module.create_model().eval().double()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randn(2, 8, 8, 16, dtype=torch.float64)
    with torch.no_grad():
        got, ref = model(x), _reference(model, x, 8, 4, 2, 16, 2)
    assert ((got - ref).abs().max() / ref.abs().max()).item() <= 1e-12
    # the tables are built from attributes: not in the state dict (a checkpoint carries weights only)
    assert sorted(model.state_dict()) == ["a.qkv.bias", "a.qkv.weight", "a.table", "b.qkv.bias", "b.qkv.weight", "b.table"]
    assert sum(p.numel() for p in model.parameters()) == res.cost.params
    for target, suffix in (("torchscript", ".pt"), ("export", ".pt2"), ("onnx", ".onnx")):
        out = compile_target(spec, CompileOptions(target=target), tmp_path / f"m{suffix}")
        assert out.files and all(err <= 1e-4 for err in out.errors.values()), (target, out.errors)


def test_window_spec_errors_point_at_the_yaml(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(WINDOW_SPEC.replace('shift: "${shift}", when', 'shift: 5, when'), encoding="utf-8")
    with pytest.raises(ArchcError, match=r"bad.yaml:\d+:\d+.*shift 5 must be smaller than the window"):
        compile_spec(spec, CompileOptions())


def test_relative_coords_are_convits() -> None:
    """ConViT's get_rel_indices for a square grid: ind = j − i tiled (x) and interleaved (y), then the squared distance."""
    n = 5
    ind = torch.arange(n).view(1, -1) - torch.arange(n).view(-1, 1)
    indx = ind.repeat(n, n)
    indy = ind.repeat_interleave(n, dim=0).repeat_interleave(n, dim=1)
    ref = torch.stack([indx, indy, indx ** 2 + indy ** 2], dim=-1).float().unsqueeze(0)
    got = _built("relative_coords", {"grid": n}, [])()
    assert got.shape == (1, n * n, n * n, 3) and torch.equal(got, ref)
    assert infer("relative_coords", {"grid": [2, 3]})[0] == TensorType((1, 6, 6, 3))
