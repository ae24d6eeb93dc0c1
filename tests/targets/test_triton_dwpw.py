"""The channels-last Triton conv→pointwise kernel: values under Triton's CPU interpreter, dwpw's dispatch, the chooser.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors. The
variable is set only while the interpreter tests run (the ``interp`` fixture sets it, imports a fresh
runtime — which reads it into ``_ALLOW_CPU_INTERPRETER`` — and restores it afterwards), so no other
test in the session is switched to the interpreter. The interpreter autotunes over one configuration
(BLOCK_P=16, BLOCK_N=32: several pixel blocks, a partial last one, and partial output chunks at these
sizes); other configurations are launched explicitly through ``_dwpw_nhwc(..., config=...)``.

Two defects of Triton 3.5's interpreter are worked around here, in the test only (the GPU path never
meets them): it turns a runtime loop bound into an int with ``int(<1-element array>)``, which NumPy
2.4 refuses; and its ``tl.dot`` multiplies bfloat16 operands as their raw uint16 bits. The shims widen
those two spots; everything else (loads, masks, casts, stores) runs as the interpreter has it, so
bfloat16 is checked here as well as float32 and float16.

The value matrix covers every pair of values of (k, C_MID, C_OUT, H×W, activations, residual, dtype)
at least once (11 cases; the full product would be 288 and take minutes under the interpreter), and
separate cases cover grouped convs, a depthwise multiplier, convs without bias, NCHW inputs, the
other tile configurations and the NCHW kernel. Tolerances (max relative error against the same
PyTorch ops in the same dtype): float32 1e-5, bfloat16 2e-2, float16 5e-3.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from archc.backends.cudagraph import dwpw_rewrite
from archc.backends.cudagraph.choice import emit_choice
from archc.backends.cudagraph.triton_dwpw import emit_runtime

from archc.passes.equivalence import module_from_source

TRITON = importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()
CL = torch.channels_last
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

#: (k, C_MID, C_OUT, (H, W), (act1, act2), residual, dtype): every pair of values appears in some row
MATRIX = [
    (3, 8, 40, (5, 7), ("none", "none"), True, "float16"),
    (7, 8, 16, (8, 8), ("gelu", "none"), False, "float32"),
    (3, 24, 16, (5, 7), ("relu", "silu"), False, "bfloat16"),
    (7, 24, 40, (8, 8), ("none", "none"), True, "bfloat16"),
    (3, 24, 40, (5, 7), ("gelu", "none"), True, "float32"),
    (7, 8, 16, (8, 8), ("relu", "silu"), True, "float16"),
    (7, 24, 16, (5, 7), ("none", "none"), False, "float16"),
    (3, 8, 40, (8, 8), ("gelu", "none"), False, "bfloat16"),
    (3, 8, 40, (5, 7), ("relu", "silu"), True, "float32"),
    (3, 24, 40, (5, 7), ("none", "none"), False, "float32"),
    (7, 8, 16, (8, 8), ("gelu", "none"), False, "float16"),
]


def _runtime(name: str) -> Any:
    return module_from_source(_HEADER + emit_runtime(), name)


def _chain(c_in: int, c_mid: int, c_out: int, k: int, groups: int, dtype: torch.dtype, bias: bool = True,
           seed: int = 0) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    torch.manual_seed(seed)
    c1 = torch.nn.Conv2d(c_in, c_mid, k, padding=k // 2, groups=groups, bias=bias).to(dtype)
    c2 = torch.nn.Conv2d(c_mid, c_out, 1, bias=bias).to(dtype)
    return c1.eval(), c2.eval()


def _torch_chain(mod: Any, c1: Any, c2: Any, x: torch.Tensor, act1: str, act2: str, residual: torch.Tensor | None) -> torch.Tensor:
    y = mod._TORCH_ACTS[act2](c2(mod._TORCH_ACTS[act1](c1(x))))
    return y if residual is None else residual + y


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).abs().max() / want.double().abs().max())


# -- the interpreter ---------------------------------------------------------------------------------


def _shim_interpreter() -> Callable[[], None]:
    """Work around Triton 3.5 interpreter defects (see the module docstring); returns the undo."""
    import triton.language as tl
    from triton.runtime import interpreter

    undo: list[Callable[[], None]] = []
    try:
        int(np.array([1]))
    except TypeError:
        original_patch = interpreter._patch_lang_tensor

        def patch_tensor(tensor: Any) -> None:
            original_patch(tensor)
            tensor.__index__ = lambda self: int(np.asarray(self.handle.data).reshape(-1)[0])

        interpreter._patch_lang_tensor = patch_tensor
        undo.append(lambda: setattr(interpreter, "_patch_lang_tensor", original_patch))

    builder = interpreter.InterpreterBuilder
    original_dot = builder.create_dot

    def create_dot(self: Any, a: Any, b: Any, d: Any, input_precision: Any, max_num_imprecise_acc: Any) -> Any:
        def widen(h: Any) -> Any:
            if h.dtype.scalar == tl.bfloat16:  # stored as uint16: widen the bits to float32 values
                data = interpreter._convert_float(h.data, tl.bfloat16, tl.float32, None).view(np.float32)
                return interpreter.TensorHandle(data, tl.float32)
            return h

        return original_dot(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    builder.create_dot = create_dot
    undo.append(lambda: setattr(builder, "create_dot", original_dot))

    def restore() -> None:
        for u in reversed(undo):
            u()

    return restore


def _triton_python_module(name: str) -> bool:
    """Triton's Python modules (its compiled extension ``triton._C`` loads once per process and stays)."""
    return (name == "triton" or name.startswith("triton.")) and not name.startswith("triton._C")


@pytest.fixture(scope="module")
def interp() -> Iterator[Any]:
    """A runtime imported with TRITON_INTERPRET=1 (restored afterwards): its kernels run on CPU tensors."""
    if not TRITON:
        pytest.skip("needs triton (its CPU interpreter); pip install triton")
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    # triton.language's own @jit helpers take the mode when triton is imported: when an earlier test (or
    # torch) imported triton without the interpreter, this fixture imports it afresh, and puts the
    # original modules back afterwards for everything else in the session
    compiled = {n: m for n, m in sys.modules.items() if _triton_python_module(n)}
    for name in compiled:
        del sys.modules[name]
    undo = _shim_interpreter()
    torch.set_num_threads(1)
    try:
        mod = _runtime("dwpw_interpreter")
        assert mod._ALLOW_CPU_INTERPRETER
        yield mod
    finally:
        undo()
        for name in [n for n in sys.modules if _triton_python_module(n)]:
            del sys.modules[name]
        sys.modules.update(compiled)
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


@pytest.mark.parametrize("k,c_mid,c_out,hw,acts,res,dtype", MATRIX)
def test_nhwc_kernel_matches_pytorch(interp: Any, k: int, c_mid: int, c_out: int, hw: tuple[int, int],
                                     acts: tuple[str, str], res: bool, dtype: str) -> None:
    dt = DTYPES[dtype]
    c1, c2 = _chain(c_mid, c_mid, c_out, k, c_mid, dt)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, c_mid, *hw, generator=gen).to(dt).contiguous(memory_format=CL)
    r = torch.randn(2, c_out, *hw, generator=gen).to(dt) if res else None
    assert interp.dwpw_path(c1, c2, x, r) == "nhwc"
    with torch.no_grad():
        got = interp.dwpw(c1, c2, x, *acts, residual=r)
        want = _torch_chain(interp, c1, c2, x, *acts, r)
    assert got.dtype == dt and got.shape == want.shape and got.is_contiguous(memory_format=CL)
    assert _rel(got, want) <= TOL[dt]


@pytest.mark.parametrize("c_in,c_mid,groups,bias,dtype,acts", [
    (24, 24, 3, True, "float32", ("sigmoid", "hardswish")),  # grouped, width 8 (ConvFirst's); act1(0) ≠ 0 in padded lanes
    (16, 16, 1, True, "float16", ("relu", "gelu")),          # group width 16: the limit
    (8, 24, 8, False, "float32", ("relu", "gelu")),          # depthwise multiplier 3, no biases
    (8, 24, 8, True, "bfloat16", ("silu", "none")),
])
def test_nhwc_kernel_grouped_and_without_bias(interp: Any, c_in: int, c_mid: int, groups: int, bias: bool, dtype: str,
                                              acts: tuple[str, str]) -> None:
    dt = DTYPES[dtype]
    c1, c2 = _chain(c_in, c_mid, 40, 3, groups, dt, bias=bias)
    # one pixel block per image where a group is wide (each input channel of a group is a pass over the taps)
    x = torch.randn(2, c_in, *((5, 7) if c_in // groups < 8 else (4, 4))).to(dt).contiguous(memory_format=CL)
    assert interp.dwpw_path(c1, c2, x) == "nhwc"
    with torch.no_grad():
        got = interp.dwpw(c1, c2, x, *acts)
        want = _torch_chain(interp, c1, c2, x, *acts, None)
    assert _rel(got, want) <= TOL[dt]


def test_nhwc_kernel_takes_nchw_inputs_and_keeps_their_layout(interp: Any) -> None:
    c1, c2 = _chain(8, 8, 16, 3, 8, torch.float32)
    x = torch.randn(2, 8, 5, 7)
    r = torch.randn(2, 16, 5, 7)
    with torch.no_grad():
        got = interp.dwpw(c1, c2, x, "silu", "none", residual=r)
        want = _torch_chain(interp, c1, c2, x, "silu", "none", r)
    assert got.is_contiguous() and _rel(got, want) <= 1e-5


@pytest.mark.parametrize("config", [(32, 64, 4), (64, 128, 8), (16, 32, 8)])
def test_nhwc_kernel_every_tile_shape(interp: Any, config: tuple[int, int, int]) -> None:
    c1, c2 = _chain(24, 24, 40, 3, 24, torch.float32)
    x = torch.randn(2, 24, 8, 9).contiguous(memory_format=CL)
    r = torch.randn(2, 40, 8, 9).contiguous(memory_format=CL)
    with torch.no_grad():
        got = interp._dwpw_nhwc(c1, c2, x, "gelu", "relu", r, config=config)
        want = _torch_chain(interp, c1, c2, x, "gelu", "relu", r)
    assert _rel(got, want) <= 1e-5


def test_nchw_kernel_under_the_interpreter(interp: Any) -> None:
    wide = _chain(17, 17, 24, 3, 1, torch.float32)  # group width 17: past the channels-last kernel's limit
    assert interp.dwpw_path(*wide, torch.randn(1, 17, 4, 5)) == "nchw"
    # the launch itself on a narrow grouped chain: the interpreter pays per tap and input channel of a group
    c1, c2 = _chain(8, 24, 40, 3, 4, torch.float32)
    x = torch.randn(2, 8, 5, 6)
    r = torch.randn(2, 40, 5, 6)
    with torch.no_grad():
        got = interp._dwpw_nchw(c1, c2, x, "none", "silu", r)
        want = _torch_chain(interp, c1, c2, x, "none", "silu", r)
    assert _rel(got, want) <= 1e-5


# -- the dispatch (no Triton needed: the conditions are checked with Triton and the interpreter mocked) ---


@pytest.fixture()
def mocked(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A runtime that believes Triton is present and its interpreter on: dwpw_path decides on CPU tensors."""
    mod = _runtime("dwpw_dispatch")
    monkeypatch.setattr(mod, "_TRITON", True)
    monkeypatch.setattr(mod, "_ALLOW_CPU_INTERPRETER", True)
    return mod


def _x(c: int, dtype: torch.dtype = torch.float32, hw: int = 6) -> torch.Tensor:
    return torch.zeros(1, c, hw, hw, dtype=dtype).contiguous(memory_format=CL)


def test_dispatch_picks_the_channels_last_kernel_where_its_conditions_hold(mocked: Any) -> None:
    path = mocked.dwpw_path
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        c1, c2 = _chain(16, 16, 64, 3, 16, dt)
        assert path(c1, c2, _x(16, dt)) == "nhwc"
        assert path(c1, c2, _x(16, dt).contiguous()) == "nhwc"  # an NCHW input is converted
        assert path(c1, c2, _x(16, dt), _x(64, dt)) == "nhwc"
    assert path(*_chain(24, 24, 8, 7, 3, torch.bfloat16), _x(24, torch.bfloat16)) == "nhwc"  # group width 8
    assert path(*_chain(1024, 1024, 8, 3, 1024, torch.float32), _x(1024, hw=2)) == "nhwc"  # C_MID at the limit


def test_dispatch_falls_back_to_the_nchw_kernel_then_to_pytorch(mocked: Any) -> None:
    path = mocked.dwpw_path
    wide = _chain(32, 32, 16, 3, 1, torch.float32)  # group width 32
    assert path(*wide, _x(32)) == "nchw"
    assert path(*_chain(32, 32, 16, 3, 1, torch.bfloat16), _x(32, torch.bfloat16)) == "torch"
    big = _chain(1040, 1040, 8, 3, 1040, torch.float32)  # C_MID past 1024
    assert path(*big, _x(1040, hw=2)) == "nchw"
    assert path(*_chain(1040, 1040, 8, 3, 1040, torch.float16), _x(1040, torch.float16, hw=2)) == "torch"
    assert path(*_chain(16, 16, 16, 3, 16, torch.float64), _x(16, torch.float64)) == "torch"
    c1, c2 = _chain(16, 16, 16, 3, 16, torch.float32)
    assert path(c1, c2, _x(16, torch.float16)) == "torch"  # weights of another dtype
    assert path(c1, c2, _x(16), _x(16, torch.float16)) == "torch"  # a residual of another dtype
    assert path(c1, c2, _x(16), torch.zeros(1, 16, 1, 1)) == "torch"  # a broadcast residual
    for bad in (dict(stride=2, padding=1), dict(dilation=2, padding=2), dict(padding=0), dict(padding=1, padding_mode="reflect")):
        c1b = torch.nn.Conv2d(16, 16, 3, groups=16, **bad)
        assert path(c1b, c2, _x(16)) == "torch", bad
    assert path(torch.nn.Conv2d(16, 16, 4, padding=2, groups=16), c2, _x(16)) == "torch"  # even k
    assert path(c1, torch.nn.Conv2d(16, 16, 1, groups=2), _x(16)) == "torch"
    assert path(c1, torch.nn.Conv2d(16, 16, 3, padding=1), _x(16)) == "torch"
    mocked._ALLOW_CPU_INTERPRETER = False  # CPU tensors without the interpreter
    assert path(c1, c2, _x(16)) == "torch" and path(*wide, _x(32)) == "torch"
    mocked._ALLOW_CPU_INTERPRETER, mocked._TRITON = True, False
    assert path(c1, c2, _x(16)) == "torch"


def _record_launches(mod: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace both kernel launchers of ``mod`` by the PyTorch chain; the returned list names each launch."""
    calls: list[str] = []

    def launcher(name: str) -> Callable[..., torch.Tensor]:
        def run(c1: Any, c2: Any, x: torch.Tensor, act1: str, act2: str, residual: Any = None) -> torch.Tensor:
            calls.append(name)
            return _torch_chain(mod, c1, c2, x, act1, act2, residual)
        return run

    monkeypatch.setattr(mod, "_dwpw_nhwc", launcher("nhwc"))
    monkeypatch.setattr(mod, "_dwpw_nchw", launcher("nchw"))
    return calls


def test_dwpw_runs_the_kernel_the_dispatch_names_unless_measured_slower(mocked: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_launches(mocked, monkeypatch)
    dw, wide = _chain(16, 16, 16, 3, 16, torch.float32), _chain(32, 32, 16, 3, 1, torch.float32)
    with torch.no_grad():
        mocked.dwpw(*dw, _x(16))
        mocked.dwpw(*wide, _x(32))
        dw[0].archc_unfused = True
        mocked.dwpw(*dw, _x(16))
    assert calls == ["nhwc", "nchw"]


def test_interpreter_flag_is_read_from_the_environment_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, on in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("TRITON_INTERPRET", value)
        assert _runtime(f"dwpw_flag_{on}")._ALLOW_CPU_INTERPRETER is on
    monkeypatch.delenv("TRITON_INTERPRET")
    assert _runtime("dwpw_flag_unset")._ALLOW_CPU_INTERPRETER is False


class _Config:
    def __init__(self, block_p: int, block_n: int, warps: int) -> None:
        self.kwargs = {"BLOCK_P": block_p, "BLOCK_N": block_n}
        self.num_warps = warps


def test_autotune_pruning_keeps_tiles_that_fit() -> None:
    mod = _runtime("dwpw_prune")
    configs = [_Config(p, n, w) for p in (16, 32, 64) for n in (32, 64, 128) for w in (4, 8)]

    def kept(c_mid: int, c_out: int, dtype: torch.dtype) -> set[tuple[int, int]]:
        nargs = {"x_ptr": torch.zeros(1, dtype=dtype), "C_OUT": c_out}
        return {(c.kwargs["BLOCK_P"], c.kwargs["BLOCK_N"]) for c in mod._nhwc_prune(configs, nargs, CMID_P2=mod._cmid_p2(c_mid))}

    assert kept(96, 384, torch.bfloat16) == {(p, n) for p in (16, 32, 64) for n in (32, 64, 128)}
    assert kept(96, 16, torch.bfloat16) == {(16, 32), (32, 32), (64, 32)}  # no output tile wider than needed
    assert kept(384, 1536, torch.bfloat16) == {(16, 32), (16, 64), (16, 128), (32, 32), (32, 64), (32, 128)}
    assert kept(768, 3072, torch.bfloat16) == {(16, 32), (16, 64)}  # mid tile and shared-memory estimate
    assert kept(1024, 4096, torch.float32) == {(16, 32)}
    assert mod._cmid_p2(8) == 16 and mod._cmid_p2(24) == 32 and mod._cmid_p2(1024) == 1024


# -- the chooser times the kernel dwpw actually runs ------------------------------------------------------

_BLOCK_SRC = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.g = nn.Conv2d(32, 32, 3, padding=1)
        self.proj = nn.Conv2d(32, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw = self.dw(x)
        pw = self.pw(dw)
        act = F.silu(pw)
        g = self.g(act)
        proj = self.proj(g)
        out = x + proj
        return out


def create_model() -> Block:
    return Block()
'''


def test_chooser_times_the_kernel_dwpw_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    src, n = dwpw_rewrite(_BLOCK_SRC)
    assert n == 2
    mod = module_from_source(src + "\n" + emit_runtime() + "\n" + emit_choice(), "dwpw_choice")
    monkeypatch.setattr(mod, "_TRITON", True)
    monkeypatch.setattr(mod, "_ALLOW_CPU_INTERPRETER", True)
    launched = _record_launches(mod, monkeypatch)
    model = mod.create_model().eval()
    timed: dict[str, tuple[list[str], list[str]]] = {}

    def timer(label: str, fused: Callable[[], Any], unfused: Callable[[], Any]) -> list[tuple[float, float]]:
        launched.clear()
        fused()
        by_fused = list(launched)
        launched.clear()
        unfused()
        timed[label] = (by_fused, list(launched))
        return [(1.0, 2.0)] * 8  # fused twice as fast: kept

    decisions = mod.choose_dwpw(model, torch.randn(2, 16, 6, 6), timer)
    assert timed == {"dw": (["nhwc"], []), "g": (["nchw"], [])}
    assert decisions["dw"][0] and decisions["dw"][1].startswith("nhwc kernel: ")
    assert decisions["g"][0] and decisions["g"][1].startswith("nchw kernel: ")
    assert model.dw.archc_unfused is False and model.g.archc_unfused is False


# -- on a GPU -----------------------------------------------------------------------------------------------


def _few_configs(mod: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two configurations keep the autotuner at work (it times them) without compiling all eighteen in a test."""
    monkeypatch.setattr(mod, "_nhwc_configs", lambda: [mod.triton.Config({"BLOCK_P": p, "BLOCK_N": n}, num_warps=4)
                                                       for p, n in ((16, 32), (32, 64))])


@pytest.mark.skipif(not (CUDA and TRITON), reason="needs CUDA and triton")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_nhwc_kernel_on_cuda(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the float32 reference must be exact float32 too
    mod = _runtime(f"dwpw_cuda_{dtype}")
    assert not mod._ALLOW_CPU_INTERPRETER
    _few_configs(mod, monkeypatch)
    dt = DTYPES[dtype]
    for c_in, c_mid, c_out, k, groups, hw in ((96, 96, 384, 3, 12, (28, 28)), (64, 64, 256, 7, 64, (14, 15)),
                                              (24, 24, 40, 3, 24, (5, 7))):
        c1, c2 = (c.cuda() for c in _chain(c_in, c_mid, c_out, k, groups, dt))
        x = torch.randn(4, c_in, *hw, device="cuda").to(dt).contiguous(memory_format=CL)
        r = torch.randn(4, c_out, *hw, device="cuda").to(dt).contiguous(memory_format=CL)
        assert mod.dwpw_path(c1, c2, x, r) == "nhwc"
        with torch.no_grad():
            got = mod.dwpw(c1, c2, x, "gelu", "silu", residual=r)
            want = _torch_chain(mod, c1, c2, x, "gelu", "silu", r)
        assert got.is_contiguous(memory_format=CL)
        assert _rel(got, want) <= TOL[dt], (c_in, c_mid, c_out, k, groups, hw)


# -- on a GPU: ConvFirst-T, fused pipeline, bf16 channels-last, against the deploy module -------------------


@pytest.mark.skipif(not (CUDA and TRITON), reason="needs CUDA and triton")
def test_convfirst_fused_bf16_channels_last_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from archc.backends.cudagraph import cudagraph_source

    from archc.compiler import CompileOptions
    from archc.precision import DTYPE_TOLERANCES, Precision, precision_source
    from archc.targets import prepare

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # compiled kernels, whatever ran before
    shape = (2, 3, 64, 64)
    fused = prepare("specs/convfirst.yaml", CompileOptions(variant="t", pipeline="fused", check=False), shape)
    deploy = prepare("specs/convfirst.yaml", CompileOptions(variant="t", pipeline="deploy", check=False), shape)
    src, _ = cudagraph_source(fused.source, shape, fused=True)
    cls = re.search(r"^def create_model\(.*\) -> (\w+):", src, re.M)
    assert cls is not None
    src += precision_source(cls.group(1), Precision("bf16", channels_last=True))  # as archc compile --dtype bf16 --channels-last
    mod = module_from_source(src, "convfirst_cg_bf16")
    assert not mod._ALLOW_CPU_INTERPRETER
    _few_configs(mod, monkeypatch)
    ref = deploy.module(False).create_model().eval()
    ref.load_state_dict(deploy.state_dict)
    x = deploy.inputs[0]
    with torch.no_grad():
        want = ref(x).float()

    def bf16_model() -> torch.nn.Module:
        m = mod.create_model().eval()
        m.load_state_dict(fused.state_dict)  # float32 weights, converted on load
        return m.cuda()

    model = bf16_model()
    assert next(model.parameters()).dtype == torch.bfloat16
    xb = mod.prepare_input(x).cuda()
    paths: list[str] = []
    plain_path = mod.dwpw_path
    monkeypatch.setattr(mod, "dwpw_path", lambda *a, **k: paths.append(plain_path(*a, **k)) or paths[-1])
    with torch.no_grad():
        got = model(xb)  # every chain through the kernel (nothing measured yet)
        for m in model.modules():
            m.archc_unfused = True
        unfused = model(xb)  # the same bf16 model on cuDNN
    assert paths and set(paths) == {"nhwc"}
    assert _rel(got.float().cpu(), unfused.float().cpu()) <= TOL[torch.bfloat16]
    assert _rel(got.float().cpu(), want) <= DTYPE_TOLERANCES["bf16"]
    # the captured runner (each chain measured, the faster kept) computes the same function
    runner = mod.CUDAGraphRunner(bf16_model(), shape)
    assert runner.static_input.dtype == torch.bfloat16 and runner.static_input.is_contiguous(memory_format=CL)
    replay = runner(xb).float().cpu()
    assert _rel(replay, want) <= DTYPE_TOLERANCES["bf16"]


def test_chooser_keeps_a_chain_unfused_when_its_kernel_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = dwpw_rewrite(_BLOCK_SRC)
    mod = module_from_source(src + "\n" + emit_runtime() + "\n" + emit_choice(), "dwpw_choice_fails")
    monkeypatch.setattr(mod, "_TRITON", True)
    monkeypatch.setattr(mod, "_ALLOW_CPU_INTERPRETER", True)

    def broken(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("out of resource: shared memory\nsecond line")

    monkeypatch.setattr(mod, "_dwpw_nhwc", broken)
    monkeypatch.setattr(mod, "_dwpw_nchw", lambda c1, c2, x, act1, act2, residual=None: _torch_chain(mod, c1, c2, x, act1, act2, residual))
    model = mod.create_model().eval()
    model.dw.archc_unfused = True  # the recording pass runs the PyTorch ops for the broken chain

    def timer(label: str, fused: Callable[[], Any], unfused: Callable[[], Any]) -> list[tuple[float, float]]:
        fused()
        unfused()
        return [(1.0, 2.0)] * 8

    decisions = mod.choose_dwpw(model, torch.randn(2, 16, 6, 6), timer)
    assert decisions["dw"] == [False, "nhwc kernel: failed here, unfused (RuntimeError: out of resource: shared memory)"]
    assert model.dw.archc_unfused is True and decisions["g"][0] and model.g.archc_unfused is False
    with torch.no_grad():
        model(torch.randn(2, 16, 6, 6))  # the broken kernel is no longer called
