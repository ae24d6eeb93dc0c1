"""Constant tensors computed from attributes when the module is built.

Each op here has no inputs and no parameters: the generated ``__init__`` computes the tensor from
the op's attributes with a small generator function (so a class built with other argument values
computes the matching tensor, and no table is pasted into the source as a literal) and keeps it as
a **non-persistent buffer** — it follows ``.to()``/``.double()`` like any buffer but is not part of
the state dict (a checkpoint never carries what the attributes determine; timm registers Swin's
index and mask the same way).

* ``relative_position_index`` (window (h, w)) → int64 (N, N), N = h·w, positions row-major:
  ``idx[n1, n2] = (y1 − y2 + h − 1)·(2w − 1) + (x1 − x2 + w − 1)``, an index into a table of the
  (2h − 1)(2w − 1) relative offsets (Swin's layout).
* ``shifted_window_mask`` (resolution (H, W), window (h, w), shift (s, t), fill) → (nW, 1, N, N) with
  nW = (H/h)(W/w): after a cyclic shift by (−s, −t), pixels of a window that came from different image
  regions may not attend to each other. Regions split each axis at H − h and H − s; entry (w, 0, i, j)
  is ``fill`` (Swin: −100) where tokens i and j of window w lie in different regions, else 0.
  Windows are numbered row-major, tokens row-major within a window (Swin's window partition).
* ``sincos_pos_embed`` (grid (H, W), dim D, temperature T) → (1, H·W, D): MAE's fixed 2-D embedding
  ``[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]``, ω_k = T^(−k/(D/4)), k < D/4, positions row-major.
* ``relative_coords`` (grid (H, W)) → (1, N, N, 3), N = H·W, positions row-major: entry (0, a, b) is
  ``(x_b − x_a, y_b − y_a, (x_b − x_a)² + (y_b − y_a)²)`` — ConViT's ``rel_indices``, the input of its
  positional attention (a linear layer of 3 → heads over the last axis).
* ``constant`` (value: a number or a nested list, dtype) → that tensor, shape from the nesting.

No MACs (built once, not per sample).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, helper, register

__all__ = ["RelativePositionIndex", "ShiftedWindowMask", "SinCosPosEmbed", "RelativeCoords", "Constant"]

#: the most elements a literal 'constant' may hold (larger tables belong in a generator op or a checkpoint)
MAX_LITERAL = 65_536

CONSTANT_DTYPES = ("float32", "int64", "bool")


class _Generated(Op):
    """An input-less op whose tensor a helper function computes in ``__init__``."""

    arity = (0, 0)
    fn: str = ""

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        raise NotImplementedError

    def arg_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        # counted like any buffer (memory, size limits), though kept out of the state dict
        return {"value": tuple(self.infer(a, ins)[0].shape)}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        value = Call(self.fn, self.args(a), names=self.arg_names())
        return Lowering(Call("Constant", (value,), names=("value",)), "{m}()", helpers=("Constant", self.fn))


class RelativePositionIndex(_Generated):
    name = "relative_position_index"
    doc = "int64 (N, N) index of the relative offset between two positions of an (h, w) window into a (2h−1)(2w−1) table"
    fn = "relative_position_index"
    attrs = (Attr("window", "pair", doc="window (h, w)", min=1),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        h, w = a["window"]
        return [TensorType((h * w, h * w), "int64")]

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(a["window"])

    def arg_names(self) -> tuple[str, ...]:
        return ("height", "width")


class ShiftedWindowMask(_Generated):
    name = "shifted_window_mask"
    doc = ("Swin's attention mask (nW, 1, N, N) for windows of a feature map shifted by −shift: fill between tokens "
           "from different image regions, 0 elsewhere")
    fn = "shifted_window_mask"
    attrs = (
        Attr("resolution", "pair", doc="feature map (H, W), divisible by the window", min=1),
        Attr("window", "pair", doc="window (h, w)", min=1),
        Attr("shift", "pair", doc="cyclic shift (s, t), 0 <= shift < window", min=0),
        Attr("fill", "float", -100.0, "value between tokens of different regions (Swin: -100)", allow_inf=True),
    )

    def check(self, a: dict[str, Any]) -> None:
        for (r, w, s), ax in zip(zip(a["resolution"], a["window"], a["shift"]), ("height", "width")):
            if r % w:
                raise OpCheckError(f"'shifted_window_mask': the window {ax} {w} must divide the resolution {ax} {r}",
                                   "window", hint="pad the feature map to a multiple of the window first")
            if s >= w:
                raise OpCheckError(f"'shifted_window_mask': the shift {s} must be smaller than the window {ax} {w}", "shift",
                                   hint="Swin shifts by window // 2")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        (hh, ww), (h, w) = a["resolution"], a["window"]
        return [TensorType(((hh // h) * (ww // w), 1, h * w, h * w))]

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return (*a["resolution"], *a["window"], *a["shift"], a["fill"])

    def arg_names(self) -> tuple[str, ...]:
        return ("height", "width", "window_h", "window_w", "shift_h", "shift_w", "fill")


class SinCosPosEmbed(_Generated):
    name = "sincos_pos_embed"
    doc = "Fixed 2-D sine-cosine position embedding (1, H·W, dim), MAE's layout [sin x, cos x, sin y, cos y]"
    fn = "sincos_pos_embed"
    attrs = (
        Attr("grid", "pair", doc="token grid (H, W)", min=1),
        Attr("dim", "int", doc="embedding width, divisible by 4", min=4),
        Attr("temperature", "float", 10000.0, "frequency base T", min=1.0),
    )

    def check(self, a: dict[str, Any]) -> None:
        if a["dim"] % 4:
            raise OpCheckError(f"'sincos_pos_embed' dim must be divisible by 4 (sin and cos of x and y), got {a['dim']}", "dim")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        h, w = a["grid"]
        return [TensorType((1, h * w, a["dim"]))]

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return (*a["grid"], a["dim"], a["temperature"])

    def arg_names(self) -> tuple[str, ...]:
        return ("height", "width", "dim", "temperature")


class RelativeCoords(_Generated):
    name = "relative_coords"
    doc = "ConViT's relative coordinates (1, N, N, 3) of an (H, W) token grid: (dx, dy, dx² + dy²) from token a to b"
    fn = "relative_coords"
    attrs = (Attr("grid", "pair", doc="token grid (H, W)", min=1),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        h, w = a["grid"]
        return [TensorType((1, h * w, h * w, 3))]

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(a["grid"])

    def arg_names(self) -> tuple[str, ...]:
        return ("height", "width")


def _nested_shape(v: Any, where: str) -> tuple[int, ...]:
    """Shape of a rectangular nested list of numbers (raise OpCheckError)."""
    if isinstance(v, (list, tuple)):
        if not v:
            raise OpCheckError(f"'constant' value has an empty list at {where}", "value")
        shapes = {_nested_shape(x, f"{where}[{i}]") for i, x in enumerate(v)}
        if len(shapes) != 1:
            raise OpCheckError(f"'constant' value is not rectangular: the lists in {where} differ in shape", "value")
        return (len(v), *shapes.pop())
    if isinstance(v, bool) or isinstance(v, (int, float)):
        if isinstance(v, float) and not abs(v) < float("inf"):
            raise OpCheckError(f"'constant' value holds {v!r} at {where}", "value", hint="use finite numbers")
        return ()
    raise OpCheckError(f"'constant' value must hold numbers, got {v!r} at {where}", "value")


def _flat(v: Any) -> list[Any]:
    return [y for x in v for y in _flat(x)] if isinstance(v, (list, tuple)) else [v]


class Constant(_Generated):
    name = "constant"
    doc = "A fixed tensor written as a number or a (nested) list, e.g. value: ${[[1, 0], [0, 1]]}; dtype float32|int64|bool"
    fn = "constant_tensor"
    attrs = (
        Attr("value", "any", doc="a number or a rectangular nested list of numbers"),
        Attr("dtype", "str", "float32", choices=CONSTANT_DTYPES),
    )

    def check(self, a: dict[str, Any]) -> None:
        shape = _nested_shape(a["value"], "value")
        n = 1
        for d in shape:
            n *= d
        if n > MAX_LITERAL:
            raise OpCheckError(f"'constant' value holds {n:,} numbers, above the {MAX_LITERAL:,} a literal may hold", "value",
                               hint="compute large tables with a generator op (relative_position_index, ...)")
        vals = _flat(a["value"])
        if a["dtype"] == "int64" and not all(isinstance(x, int) for x in vals):
            raise OpCheckError("'constant' with dtype int64 needs integer values", "value")
        if a["dtype"] == "bool" and not all(isinstance(x, bool) or x in (0, 1) for x in vals):
            raise OpCheckError("'constant' with dtype bool needs true/false (or 0/1) values", "value")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [TensorType(_nested_shape(a["value"], "value"), a["dtype"])]

    def args(self, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return (_plain(a["value"]), a["dtype"])

    def arg_names(self) -> tuple[str, ...]:
        return ("value", "dtype")


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else (dim_int(v) if isinstance(v, int) and not isinstance(v, bool) else v)


for _cls in (RelativePositionIndex, ShiftedWindowMask, SinCosPosEmbed, RelativeCoords, Constant):
    register(_cls)

helper(
    "Constant",
    '''
class Constant(nn.Module):
    """A tensor computed at construction, kept as a non-persistent buffer (moves with .to(), not in the state dict)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.value
''',
)

helper(
    "relative_position_index",
    '''
def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(N, N) index of the offset (dy, dx) between positions of an (height, width) window, N = height * width."""
    ys = torch.arange(height).repeat_interleave(width)
    xs = torch.arange(width).repeat(height)
    dy = ys[:, None] - ys[None, :] + (height - 1)
    dx = xs[:, None] - xs[None, :] + (width - 1)
    return dy * (2 * width - 1) + dx
''',
)

helper(
    "shifted_window_mask",
    '''
def shifted_window_mask(height: int, width: int, window_h: int, window_w: int, shift_h: int, shift_w: int,
                        fill: float) -> torch.Tensor:
    """(windows, 1, N, N) mask: fill between tokens of a shifted window that come from different image regions."""
    region = torch.zeros(height, width)
    label = 0
    for y0, y1 in ((0, height - window_h), (height - window_h, height - shift_h), (height - shift_h, height)):
        for x0, x1 in ((0, width - window_w), (width - window_w, width - shift_w), (width - shift_w, width)):
            region[y0:y1, x0:x1] = label
            label += 1
    windows = region.reshape(height // window_h, window_h, width // window_w, window_w)
    windows = windows.permute(0, 2, 1, 3).reshape(-1, window_h * window_w)
    differ = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, fill).unsqueeze(1)
''',
)

helper(
    "sincos_pos_embed",
    '''
def sincos_pos_embed(height: int, width: int, dim: int, temperature: float) -> torch.Tensor:
    """(1, height * width, dim) fixed embedding [sin(x w), cos(x w), sin(y w), cos(y w)], positions row-major."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys = torch.arange(height, dtype=torch.float64).repeat_interleave(width)
    xs = torch.arange(width, dtype=torch.float64).repeat(height)
    ox, oy = xs[:, None] * omega[None, :], ys[:, None] * omega[None, :]
    return torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1).float().unsqueeze(0)
''',
)

helper(
    "relative_coords",
    '''
def relative_coords(height: int, width: int) -> torch.Tensor:
    """(1, N, N, 3): (dx, dy, dx^2 + dy^2) from token a to token b of a (height, width) grid, N = height * width."""
    ys = torch.arange(height).repeat_interleave(width)
    xs = torch.arange(width).repeat(height)
    dx = (xs[None, :] - xs[:, None]).float()
    dy = (ys[None, :] - ys[:, None]).float()
    return torch.stack([dx, dy, dx * dx + dy * dy], dim=-1).unsqueeze(0)
''',
)

helper(
    "constant_tensor",
    '''
def constant_tensor(value, dtype: str) -> torch.Tensor:
    """The literal value as a tensor of the named dtype."""
    return torch.tensor(value, dtype={"float32": torch.float32, "int64": torch.int64, "bool": torch.bool}[dtype])
''',
)
