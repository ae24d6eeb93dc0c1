"""Pieces of TransNeXt's aggregated attention: sliding-window gathers, L2 normalization and its tables.

* ``unfold`` (kernel, padding, stride, dilation) → ``F.unfold``: (B, C, H, W) → (B, C·kh·kw, L), the
  kh×kw neighbourhood of every output position, channel-major then row-major taps, zero padding.
  No MACs (a gather).
* ``l2_normalize`` (dim, eps) → ``F.normalize``: x / max(‖x‖₂, eps) along one axis.
* ``unfold_padding_mask`` (resolution (H, W), window k, fill) → (H·W, k²): ``fill`` (−inf) where tap t of
  query n falls into the zero padding of a k×k ``unfold`` (padding k // 2), 0 elsewhere — added to the
  local logits it removes the padded keys from the softmax (TransNeXt's ``padding_mask``).
* ``seq_length_scale`` (resolution, window, extra) with one input: x · log(n), n the number of keys a
  query attends to — its in-bounds window taps plus ``extra`` pooled tokens, one value per query
  ((N, 1) table computed in float32, as TransNeXt builds it), or H·W + extra without a window (a
  Python float: full precision in float64 models, as TransNeXt's NumPy scalar).
* ``log_cpb_coords`` / ``log_cpb_index`` (query (h, w), key (h', w'), pretrain (p, p')): TransNeXt's
  continuous position bias inputs. Key positions are the centres of an adaptive average pool of the
  query axis to the key size; offsets (Δy, Δx) = (q − k)/(p − 1)·8 per axis; the distinct offset pairs
  (sorted, ``torch.unique``) mapped by sign(v)·log2(|v| + 1)/3 form the table (1, T, 2); the index
  (h·w, h'·w') int64 says which table row each (query, key) pair reads. Built in float32 (the official
  code's precision). A small MLP over the table, gathered by the index, gives a (heads, N, M) bias.

The tables are non-persistent buffers computed in ``__init__`` (see ``archc.ops.constants``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, helper, register
from archc.ops.constants import _Generated
from archc.ops.shape import axis

__all__ = ["Unfold", "L2Normalize", "UnfoldPaddingMask", "SeqLengthScale", "LogCpbCoords", "LogCpbIndex"]


def _out_len(size: int, k: int, p: int, s: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class Unfold(Op):
    """y = F.unfold(x): every kh×kw neighbourhood as a column (B, C·kh·kw, L)."""

    name = "unfold"
    doc = "Sliding kh×kw neighbourhoods of NCHW as columns (F.unfold): (B, C·kh·kw, L); padding defaults to dilation·(k−1)/2."
    attrs = (
        Attr("kernel", "pair", doc="neighbourhood size", min=1),
        Attr("padding", "pair", None, "zero padding (default dilation·(k−1)/2)", min=0),
        Attr("stride", "pair", 1, min=1),
        Attr("dilation", "pair", 1, min=1),
    )

    def _padding(self, a: Mapping[str, Any]) -> tuple[int, int]:
        if a["padding"] is not None:
            return tuple(a["padding"])  # type: ignore[return-value]
        return tuple(d * (k - 1) // 2 for k, d in zip(a["kernel"], a["dilation"]))  # type: ignore[return-value]

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank != 4:
            raise OpCheckError(f"'unfold' expects an NCHW input, got {x}")
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = a["kernel"], self._padding(a), a["stride"], a["dilation"]
        oh = _out_len(dim_int(x.shape[2]), kh, ph, sh, dh)
        ow = _out_len(dim_int(x.shape[3]), kw, pw, sw, dw)
        if oh < 1 or ow < 1:
            raise OpCheckError(f"'unfold': a {kh}×{kw} neighbourhood does not fit the {x.shape[2]}×{x.shape[3]} input",
                               "kernel", hint="use a smaller kernel or more padding")
        return [x.with_shape((x.shape[0], dim_int(x.shape[1]) * kh * kw, oh * ow))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "F.unfold({0}, {kernel}, {dilation}, {padding}, {stride})",
                        {"kernel": list(a["kernel"]), "dilation": list(a["dilation"]),
                         "padding": list(self._padding(a)), "stride": list(a["stride"])})


class L2Normalize(Op):
    """y = x / max(‖x‖₂, eps) along ``dim`` (F.normalize)."""

    name = "l2_normalize"
    doc = "x / max(‖x‖₂, eps) along one non-batch axis (F.normalize), e.g. cosine attention's queries and keys."
    attrs = (Attr("dim", "int", -1), Attr("eps", "float", 1e-12, min=0.0))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        axis(self.name, "dim", a["dim"], ins[0].rank)
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "F.normalize({0}, dim={dim}, eps={eps})", {"dim": a["dim"], "eps": a["eps"]})


def _odd_window(op: str, k: int) -> None:
    if k % 2 == 0:
        raise OpCheckError(f"'{op}': the window {k} must be odd (padding k // 2 keeps every position centred)", "window",
                           hint="TransNeXt uses window 3")


class UnfoldPaddingMask(_Generated):
    name = "unfold_padding_mask"
    doc = ("(H·W, k²) additive mask of a k×k unfold with padding k // 2: fill (−inf) where a tap falls into the "
           "padding, 0 elsewhere (TransNeXt's padding_mask)")
    fn = "unfold_padding_mask"
    attrs = (
        Attr("resolution", "pair", doc="feature map (H, W)", min=1),
        Attr("window", "int", doc="window k (odd)", min=1),
        Attr("fill", "float", float("-inf"), "value at padded taps", allow_inf=True),
    )

    def check(self, a: dict[str, Any]) -> None:
        _odd_window(self.name, a["window"])

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        h, w = a["resolution"]
        return [TensorType((h * w, a["window"] ** 2))]

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return (*a["resolution"], a["window"], a["fill"])

    def arg_names(self) -> tuple[str, ...]:
        return ("height", "width", "window", "fill")


def _valid_taps(n: int, k: int) -> list[int]:
    """In-bounds taps of a length-k window centred at each of n positions (zero padding k // 2)."""
    r = k // 2
    return [min(i + r, n - 1) - max(i - r, 0) + 1 for i in range(n)]


class SeqLengthScale(Op):
    """y = x · log(n_keys), per query (a window) or one number (no window)."""

    name = "seq_length_scale"
    doc = ("x · log(n), n = keys per query: in-bounds taps of its k×k window + extra, an (N, 1) float32 table "
           "(window > 0), or H·W + extra (window 0); TransNeXt's length scaling of cosine attention logits")
    attrs = (
        Attr("resolution", "pair", doc="query grid (H, W)", min=1),
        Attr("window", "int", 0, "local window k (odd), 0 for none", min=0),
        Attr("extra", "int", 0, "further keys per query (pooled tokens)", min=0),
    )

    def check(self, a: dict[str, Any]) -> None:
        if a["window"]:
            _odd_window(self.name, a["window"])
        elif a["resolution"][0] * a["resolution"][1] + a["extra"] < 2:
            raise OpCheckError("'seq_length_scale': one key gives log(1) = 0, a zero scale", "resolution",
                               hint="attend over at least two keys")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        h, w = a["resolution"]
        if x.rank < 2 or dim_int(x.shape[-2]) != h * w:
            raise OpCheckError(f"'seq_length_scale' expects queries (..., {h * w}, d) of a {h}×{w} grid, got {x}",
                               "resolution")
        return [x]

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        h, w = a["resolution"]
        return {"value": (h * w, 1) if a["window"] else ()}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        # the helper picks the table or the scalar, so one generated class serves both (no branch on a traced value)
        h, w = a["resolution"]
        value = Call("seq_length_table", (h, w, a["window"], a["extra"]), names=("height", "width", "window", "extra"))
        return Lowering(Call("Constant", (value,), names=("value",)), "{0} * {m}()",
                        helpers=("Constant", "seq_length_table"))


def _pooled_centres(q: int, k: int) -> list[Fraction]:
    """Centres of adaptive average pooling of positions 0..q−1 into k bins (PyTorch's bin edges)."""
    return [Fraction((i * q) // k + -(-((i + 1) * q) // k) - 1, 2) for i in range(k)]


def cpb_table_size(query: Sequence[int], key: Sequence[int]) -> int:
    """Rows T of the log-spaced coordinate table: distinct (Δy, Δx) query-to-pooled-key offsets."""
    n = 1
    for q, k in zip(query, key):
        n *= len({i - c for i in range(q) for c in _pooled_centres(q, k)})
    return n


class _Cpb(_Generated):
    attrs = (
        Attr("query", "pair", doc="query grid (h, w)", min=1),
        Attr("key", "pair", doc="key grid (h', w'), an adaptive pool of the query grid", min=1),
        Attr("pretrain", "pair", doc="query grid at the training resolution (p, p'), scales the offsets", min=2),
    )

    def check(self, a: dict[str, Any]) -> None:
        for q, k, ax in zip(a["query"], a["key"], ("height", "width")):
            if k > q:
                raise OpCheckError(f"'{self.name}': the key {ax} {k} exceeds the query {ax} {q}", "key",
                                   hint="keys are pooled from the queries' grid")

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return (*a["query"], *a["key"], *a["pretrain"])

    def arg_names(self) -> tuple[str, ...]:
        return ("query_h", "query_w", "key_h", "key_w", "pretrain_h", "pretrain_w")


class LogCpbCoords(_Cpb):
    name = "log_cpb_coords"
    doc = ("TransNeXt's (1, T, 2) table of distinct query-to-pooled-key offsets, scaled by the pretrain grid and "
           "log-spaced: sign(v)·log2(|v| + 1)/3")
    fn = "log_cpb_coords"

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [TensorType((1, cpb_table_size(a["query"], a["key"]), 2))]


class LogCpbIndex(_Cpb):
    name = "log_cpb_index"
    doc = "int64 (h·w, h'·w') row of log_cpb_coords for each (query, pooled key) pair"
    fn = "log_cpb_index"

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        (qh, qw), (kh, kw) = a["query"], a["key"]
        return [TensorType((qh * qw, kh * kw), "int64")]


for _cls in (Unfold, L2Normalize, UnfoldPaddingMask, SeqLengthScale, LogCpbCoords, LogCpbIndex):
    register(_cls)

helper(
    "unfold_padding_mask",
    '''
def unfold_padding_mask(height: int, width: int, window: int, fill: float) -> torch.Tensor:
    """(height * width, window ** 2): fill where a tap of the padded window unfold lies outside the map, else 0."""
    taps = F.unfold(torch.ones(1, 1, height, width), window, padding=window // 2)[0].t()
    return torch.zeros(taps.shape).masked_fill(taps == 0, fill)
''',
)

helper(
    "seq_length_table",
    '''
def seq_length_table(height: int, width: int, window: int, extra: int) -> torch.Tensor:
    """log of the keys per query: (height * width, 1) float32 in-bounds window taps + extra; without a window
    a float64 scalar log(height * width + extra) (a 0-d tensor keeps the other operand's dtype)."""
    if window == 0:
        return torch.tensor(float(height * width + extra), dtype=torch.float64).log()
    taps = F.unfold(torch.ones(1, 1, height, width), window, padding=window // 2)[0].sum(0)
    return torch.log(taps + extra).unsqueeze(-1)
''',
)

helper(
    "log_cpb_tables",
    '''
def log_cpb_tables(query_h: int, query_w: int, key_h: int, key_w: int, pretrain_h: int, pretrain_w: int):
    """Distinct log-spaced (dy, dx) offsets from queries to adaptively pooled keys, and each pair's row.

    Computed on the CPU (torch.unique has no meta kernel) and moved to the default device, so a model
    can still be built under ``torch.device("meta")``.
    """
    device = torch.empty(0).device
    axes = []
    for q, k, p in ((query_h, key_h, pretrain_h), (query_w, key_w, pretrain_w)):
        qs = torch.arange(q, dtype=torch.float32, device="cpu")
        ks = F.adaptive_avg_pool1d(qs.unsqueeze(0), k).squeeze(0)
        axes.append((qs, ks, p))
    (qh, kh, ph), (qw, kw, pw) = axes
    qy, qx = [t.reshape(-1) for t in torch.meshgrid(qh, qw, indexing="ij")]
    ky, kx = [t.reshape(-1) for t in torch.meshgrid(kh, kw, indexing="ij")]
    dy = (qy[:, None] - ky[None, :]) / (ph - 1) * 8
    dx = (qx[:, None] - kx[None, :]) / (pw - 1) * 8
    table, index = torch.unique(torch.stack([dy, dx], dim=-1).reshape(-1, 2), return_inverse=True, dim=0)
    table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / torch.log2(torch.tensor(8, dtype=torch.float32, device="cpu"))
    return table.unsqueeze(0).to(device), index.reshape(qy.shape[0], ky.shape[0]).to(device)
''',
)

helper(
    "log_cpb_coords",
    '''
def log_cpb_coords(query_h: int, query_w: int, key_h: int, key_w: int, pretrain_h: int, pretrain_w: int) -> torch.Tensor:
    """(1, T, 2) log-spaced offset table (see log_cpb_tables)."""
    return log_cpb_tables(query_h, query_w, key_h, key_w, pretrain_h, pretrain_w)[0]
''',
    needs=("log_cpb_tables",),
)

helper(
    "log_cpb_index",
    '''
def log_cpb_index(query_h: int, query_w: int, key_h: int, key_w: int, pretrain_h: int, pretrain_w: int) -> torch.Tensor:
    """(queries, keys) int64 row of the offset table for each pair (see log_cpb_tables)."""
    return log_cpb_tables(query_h, query_w, key_h, key_w, pretrain_h, pretrain_w)[1]
''',
    needs=("log_cpb_tables",),
)
