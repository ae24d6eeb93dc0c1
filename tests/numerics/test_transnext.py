"""specs/transnext.yaml against an independent TransNeXt (the official pure-PyTorch path's layout and numerics).

The reference below follows the official classification/transnext.py + attention_native.py by their
formulas only: the 3×3 neighbourhood is gathered by padded slicing instead of an unfold, the logits
and aggregations are einsums, the position-bias offsets are enumerated per (query, key) pair in
Python. The offset table itself is built in float32 and log-spaced with the same float32 tensor
operations on the same sorted table as the official code, since those float32 roundings are part of
the model (they survive ``.double()``).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from archc.compiler import CompileOptions, compile_spec
from archc.ops.aggregated import cpb_table_size
from tests.artifact import import_source
from tests.numerics.exact import assert_exact

SPEC = Path(__file__).resolve().parents[2] / "specs" / "transnext.yaml"
torch.set_num_threads(1)

#: the official transnext_micro config (classification/transnext.py)
MICRO = {"dims": [48, 96, 192, 384], "heads": [2, 4, 8, 16], "depths": [2, 2, 15, 2], "mlp_ratios": [8, 8, 4, 4],
         "sr_ratios": [8, 4, 2, 1]}
#: parameter count of the official transnext_micro (its module built with the config above; the reference counts it)
MICRO_PARAMS = 12_809_304


# ---------------------------------------------------------------------------------------------- reference tables
def _centres(q: int, k: int) -> list[float]:
    """Mean position of each of k adaptive-average-pool bins over positions 0..q-1."""
    out = []
    for i in range(k):
        lo, hi = math.floor(i * q / k), math.ceil((i + 1) * q / k)
        out.append(sum(range(lo, hi)) / (hi - lo))
    return out


@cache
def _cpb(q: int, k: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 2) float32 log-spaced offset table and the (q², k²) row of each (query, key) pair, square grids."""
    cs = _centres(q, k)
    # float32 offsets: (query − key centre) / (p − 1) · 8, each operation rounded to float32
    off = [[float(np.float32(np.float32(a - c) / np.float32(p - 1)) * np.float32(8)) for c in cs] for a in range(q)]
    pairs = {}
    rows = []
    for qy in range(q):
        for qx in range(q):
            row = []
            for ky in range(k):
                for kx in range(k):
                    key = (off[qy][ky], off[qx][kx])
                    row.append(pairs.setdefault(key, len(pairs)))
            rows.append(row)
    order = sorted(pairs)  # the official table is torch.unique's sorted rows
    rank = {key: r for r, key in enumerate(order)}
    by_id = {i: rank[key] for key, i in pairs.items()}
    index = torch.tensor([[by_id[i] for i in row] for row in rows], dtype=torch.int64)
    t = torch.tensor(order, dtype=torch.float32)
    t = torch.sign(t) * torch.log2(torch.abs(t) + 1.0) / torch.log2(torch.tensor(8, dtype=torch.float32))
    return t, index


def _taps(res: int, window: int) -> torch.Tensor:
    """(N, window²) bool: tap t of query n lies inside the res×res map."""
    r = window // 2
    ok = [[0 <= y + dy < res and 0 <= x + dx < res for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
          for y in range(res) for x in range(res)]
    return torch.tensor(ok)


# ---------------------------------------------------------------------------------------------- reference model
class _Cpb(nn.Module):
    def __init__(self, heads: int) -> None:
        super().__init__()
        self.cpb_fc1 = nn.Linear(2, 512)
        self.cpb_fc2 = nn.Linear(512, heads)

    def bias(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        per_row = self.cpb_fc2(F.relu(self.cpb_fc1(table.to(self.cpb_fc1.weight.dtype))))  # (T, heads)
        return per_row[index].permute(2, 0, 1)  # (heads, N, M)


class RefAggregated(_Cpb):
    def __init__(self, dim: int, heads: int, res: int, sr: int, pretrain: int, window: int = 3) -> None:
        super().__init__(heads)
        self.heads, self.res, self.window, self.pool_size = heads, res, window, res // sr
        self.pretrain = pretrain
        d, taps = dim // heads, window * window
        self.temperature = nn.Parameter(torch.zeros(heads, 1, 1))
        self.q = nn.Linear(dim, dim)
        self.query_embedding = nn.Parameter(torch.zeros(heads, 1, d))
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, 1)
        self.norm = nn.LayerNorm(dim)
        self.relative_pos_bias_local = nn.Parameter(torch.zeros(heads, taps))
        self.learnable_tokens = nn.Parameter(torch.zeros(heads, d, taps))
        self.learnable_bias = nn.Parameter(torch.zeros(heads, 1, taps))

    def _neighbours(self, t: torch.Tensor) -> torch.Tensor:
        """(B, N, h, d) → (B, h, N, d, window²): the window around each position, zeros outside the map."""
        b, n, h, d = t.shape
        r, res = self.window // 2, self.res
        g = F.pad(t.reshape(b, res, res, h, d), (0, 0, 0, 0, r, r, r, r))
        taps = [g[:, y:y + res, x:x + res] for y in range(self.window) for x in range(self.window)]
        return torch.stack(taps, dim=-1).reshape(b, n, h, d, -1).permute(0, 2, 1, 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, res, m = self.heads, self.res, self.pool_size ** 2
        valid = _taps(res, self.window)
        keys = valid.sum(1, keepdim=True).float() + m
        scale = torch.tensor([[float(np.float32(math.log(v)))] for v in keys.flatten().tolist()], dtype=x.dtype)
        q = F.normalize(self.q(x).reshape(b, n, h, -1), dim=-1).transpose(1, 2)
        qs = (q + self.query_embedding) * F.softplus(self.temperature) * scale
        k, v = self.kv(x).split(c, dim=-1)
        k_win = self._neighbours(F.normalize(k.reshape(b, n, h, -1), dim=-1))
        v_win = self._neighbours(v.reshape(b, n, h, -1))
        local = torch.einsum("bhnd,bhndt->bhnt", qs, k_win) + self.relative_pos_bias_local[:, None, :]
        local = local.masked_fill(~valid, float("-inf"))
        y = F.gelu(self.sr(x.transpose(1, 2).reshape(b, c, res, res)))
        y = self.norm(F.adaptive_avg_pool2d(y, self.pool_size).flatten(2).transpose(1, 2))
        kp, vp = self.kv(y).split(c, dim=-1)
        kp = F.normalize(kp.reshape(b, m, h, -1), dim=-1).transpose(1, 2)
        vp = vp.reshape(b, m, h, -1).transpose(1, 2)
        table, index = _cpb(res, self.pool_size, self.pretrain)
        pooled = torch.einsum("bhnd,bhmd->bhnm", qs, kp) + self.bias(table, index)
        attn = torch.cat([local, pooled], dim=-1).softmax(-1)
        a_local, a_pool = attn[..., :self.window ** 2], attn[..., self.window ** 2:]
        w_local = torch.einsum("bhnd,hdt->bhnt", q, self.learnable_tokens) + self.learnable_bias + a_local
        out = torch.einsum("bhnt,bhndt->bhnd", w_local, v_win) + torch.einsum("bhnm,bhmd->bhnd", a_pool, vp)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class RefAttention(_Cpb):
    def __init__(self, dim: int, heads: int, res: int, pretrain: int) -> None:
        super().__init__(heads)
        self.heads, self.res, self.pretrain = heads, res, pretrain
        self.temperature = nn.Parameter(torch.zeros(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.query_embedding = nn.Parameter(torch.zeros(heads, 1, dim // heads))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        qs = (F.normalize(q, dim=-1) + self.query_embedding) * F.softplus(self.temperature) * math.log(n)
        table, index = _cpb(self.res, self.res, self.pretrain)
        logits = torch.einsum("bhnd,bhmd->bhnm", qs, F.normalize(k, dim=-1)) + self.bias(table, index)
        out = torch.einsum("bhnm,bhmd->bhnd", logits.softmax(-1), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _DW(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(ch, ch, 3, padding=1, groups=ch)


class RefConvGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.dwconv = _DW(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.fc1(x).chunk(2, dim=-1)
        b, n, h = a.shape
        a = self.dwconv.dwconv(a.transpose(1, 2).reshape(b, h, self.res, self.res)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(a) * gate)


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, res: int, sr: int, pretrain: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAggregated(dim, heads, res, sr, pretrain) if sr > 1 else RefAttention(dim, heads, res, pretrain)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefConvGLU(dim, int(2 * int(dim * mlp_ratio) / 3), res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefEmbed(nn.Module):
    def __init__(self, cin: int, dim: int, k: int, s: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, k, s, k // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class RefTransNeXt(nn.Module):
    def __init__(self, img: int, pretrain: int | None = None, dims=MICRO["dims"], heads=MICRO["heads"],
                 depths=MICRO["depths"], mlp_ratios=MICRO["mlp_ratios"], sr_ratios=MICRO["sr_ratios"],
                 num_classes: int = 1000) -> None:
        super().__init__()
        pretrain = pretrain or img
        self.res = [img // 4 // 2 ** i for i in range(4)]
        for i in range(4):
            setattr(self, f"patch_embed{i + 1}", RefEmbed(3 if i == 0 else dims[i - 1], dims[i], 7 if i == 0 else 3,
                                                         4 if i == 0 else 2))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                RefBlock(dims[i], heads[i], self.res[i], sr_ratios[i], pretrain // 4 // 2 ** i, mlp_ratios[i])
                for _ in range(depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=1e-6))
        self.head = nn.Linear(dims[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x)
            x = getattr(self, f"norm{i + 1}")(x)
            if i < 3:
                x = x.transpose(1, 2).reshape(x.shape[0], -1, self.res[i], self.res[i])
        return self.head(x.mean(1))


# ---------------------------------------------------------------------------------------------- comparison
def _key(ours: str) -> str:
    """archc's state-dict key → the official one."""
    if ours.startswith("stages."):
        i, part, rest = ours[len("stages."):].split(".", 2)
        ours = {"patch_embed": f"patch_embed{int(i) + 1}.", "blocks": f"block{int(i) + 1}.",
                "norm": f"norm{int(i) + 1}."}[part] + rest
    return (ours.replace(".attn.query.", ".attn.").replace(".attn.cpb.", ".attn.")
            .replace(".mlp.dwconv.", ".mlp.dwconv.dwconv."))


def _map_weights(model: nn.Module, ref: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
        theirs, ours = ref.state_dict(), model.state_dict()
        assert len(ours) == len(theirs)
        for key, t in ours.items():
            t.copy_(theirs[_key(key)])


def _compare(params: list[str], ref_kw: dict, batch: int, tmp_path: Path, variant: str = "micro") -> tuple:
    res = compile_spec(SPEC, CompileOptions(variant=variant, params=params))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = RefTransNeXt(**ref_kw).eval().double()
    n = sum(p.numel() for p in model.parameters())
    assert n == res.cost.params == sum(p.numel() for p in ref.parameters())
    _map_weights(model, ref)
    img = ref_kw["img"]
    x = torch.randn(batch, 3, img, img, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), ref(x)
    assert torch.isfinite(want).all()
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12
    return res, model


def test_micro_params_equal_the_official_count(tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions())
    assert res.cost.params == MICRO_PARAMS == sum(p.numel() for p in RefTransNeXt(224).parameters())


def test_micro_at_64px_matches_reference_with_batch(tmp_path: Path) -> None:
    res, model = _compare(["img=64"], {"img": 64}, 2, tmp_path)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    # the counter sees the matmuls/einsums the MAC rules count (the position-bias MLPs included)
    assert fc.get_total_flops() // 2 == res.cost.macs
    # scripted and exported modules agree with eager (float32)
    model = model.float()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), want, rtol=1e-5, atol=1e-5)


def test_other_resolution_keeps_the_pretrain_scaling(tmp_path: Path) -> None:
    # a 224-trained model run at 96 px: tables for 96, offsets scaled by the 224 grid (official pretrain_size)
    kw = {"img": 96, "pretrain": 224, "num_classes": 7}
    _compare(["img=96", "pretrain=224", "num_classes=7"], kw, 1, tmp_path)


def test_micro_at_224_matches_reference(tmp_path: Path) -> None:
    _compare([], {"img": 224}, 1, tmp_path)


@pytest.mark.parametrize("q,k,p", [(56, 7, 56), (28, 7, 56), (7, 7, 7), (3, 2, 7), (12, 5, 20)])
def test_table_size_and_contents(q: int, k: int, p: int) -> None:
    from archc.ops.base import HELPERS

    ns: dict = {"torch": torch, "F": F}
    for name in ("log_cpb_tables", "log_cpb_coords", "log_cpb_index"):
        exec(HELPERS[name].source, ns)  # noqa: S102 - the generated helpers themselves
    table, index = ns["log_cpb_tables"](q, q, k, k, p, p)
    want_t, want_i = _cpb(q, k, p)
    assert table.shape == (1, cpb_table_size((q, q), (k, k)), 2)
    assert torch.equal(table[0], want_t) and torch.equal(index, want_i)


@pytest.mark.parametrize("params,message", [
    (["window=4", "img=64"], "must be odd"),
    (["img=32"], "one key gives log"),  # the last stage would be a single token
    (["img=80"], "'reshape' shape"),  # not a multiple of 32: the stride-2 embeddings round up
    (["img=64", "pretrain=32"], "must be >= 2"),  # the offsets are scaled by (pretrain grid - 1)
])
def test_sizes_the_official_model_cannot_take_are_refused(params: list[str], message: str) -> None:
    from archc.diagnostics import ArchcError

    with pytest.raises(ArchcError, match=message) as err:
        compile_spec(SPEC, CompileOptions(params=params))
    assert err.value.loc is not None and "\n" not in err.value.message  # one line, at the node that breaks


def test_official_layout_checkpoint_maps_by_structure(tmp_path: Path) -> None:
    """A state dict with the official names (patch_embed1, block1.0.attn.query_embedding, mlp.dwconv.dwconv, ...)
    maps onto the module by structure alone (archc weights) and gives the reference's outputs."""
    from archc.weights.api import map_checkpoint

    ref = RefTransNeXt(64).double().eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
    mapped = map_checkpoint(SPEC, {k: t.clone() for k, t in ref.state_dict().items()}, params=["img=64"])
    assert mapped.map.complete
    res = compile_spec(SPEC, CompileOptions(params=["img=64"]))
    model = import_source(res.source, tmp_path).create_model().double().eval()
    model.load_state_dict(mapped.state)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=gen)
    assert_exact(model, ref, x)
