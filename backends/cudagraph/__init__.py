"""The cudagraph target: a standalone generated module whose runner replays a captured CUDA graph.

The artifact is the PyTorch backend's module (of the chosen pipeline) plus:

* ``CUDAGraphRunner`` — warms the model up on a side stream, captures one forward for a fixed input
  shape into a ``torch.cuda.CUDAGraph`` with static input and output buffers, and replays it; a
  clear error when CUDA is absent, and when a call's input shape differs from the captured one;
* ``create_runner(shape=CAPTURE_SHAPE, weights=None)`` — ``create_model()`` with the weights file
  beside the module (or ``weights``), moved to CUDA and captured;
* with ``--pipeline fused``: each k×k conv → [activation] → 1×1 conv [→ activation] [+ residual] chain of a
  region's forward calls ``dwpw(...)``, a generated Triton kernel that keeps the intermediate
  tensor in registers (see :mod:`.triton_dwpw`): the channels-last kernel (float32, bfloat16,
  float16; depthwise and small-group k×k convs) where it applies, else the NCHW float32 one;
  without Triton or CUDA, or for a chain neither kernel takes, it runs the PyTorch convs.
  When the runner is built, each chain is timed against its PyTorch convs on that GPU and the
  faster kept, or the record of an earlier run applied (:mod:`.choice`, ``<module>.fusion.json``);
* with ``--dtype``/``--channels-last`` (:mod:`archc.precision`): the runner's input buffer takes the
  model's dtype and layout.
"""

from __future__ import annotations

import ast

from archc.backends.cudagraph.choice import emit_choice
from archc.backends.cudagraph.triton_dwpw import emit_runtime

from archc.passes.fusion import Flow

__all__ = ["cudagraph_source", "dwpw_rewrite", "RUNNER_SOURCE"]

RUNNER_SOURCE = '''

# -- CUDA graph runner (archc cudagraph target) ---------------------------------------------------

CAPTURE_SHAPE = {shape}


class CUDAGraphRunner:
    """Replays one captured forward of ``model`` for inputs of exactly ``shape``, on CUDA.

    Construction warms the model up on a side stream (lazy initialisation, cuDNN autotuning happen
    outside the graph), then captures one forward into a CUDA graph with a static input buffer.
    Each call copies its input into that buffer, replays the graph and returns the static output
    buffer — overwritten by the next call; clone it to keep it.
    """

    def __init__(self, model: nn.Module, shape=CAPTURE_SHAPE, device="cuda", warmup: int = 3) -> None:
        _require_cuda()
        self.shape = tuple(int(d) for d in shape)
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"CUDAGraphRunner needs a CUDA device, got {{self.device}}")
        self.model = model.eval().to(self.device)
        # the model's dtype and layout (archc compile --dtype/--channels-last): a float32 input buffer would not fit it
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)
        self.static_input = torch.zeros(self.shape, device=self.device, dtype=dtype)
        if globals().get("CHANNELS_LAST") and len(self.shape) == 4:
            self.static_input = self.static_input.contiguous(memory_format=torch.channels_last)
        choose = globals().get("apply_choice")  # fused modules: each dwpw chain measured here, or the record applied
        if choose is not None:
            with torch.no_grad():
                self.fusion = choose(self.model, self.static_input.normal_())
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(max(1, warmup)):
                self.model(self.static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.static_output = self.model(self.static_input)

    def __call__(self, x: torch.Tensor):
        if tuple(x.shape) != self.shape:
            raise ValueError(f"this CUDA graph was captured for input shape {{self.shape}}, got {{tuple(x.shape)}}; "
                             "capture another runner with create_runner(shape=...)")
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise RuntimeError("the cudagraph runner needs CUDA, and torch.cuda.is_available() is False "
                           f"(torch {{torch.__version__}}); on CPU use create_model() directly")


def create_runner(shape=CAPTURE_SHAPE, weights=None, device="cuda", warmup: int = 3) -> CUDAGraphRunner:
    """create_model() with weights (``weights``, else the .pth file beside this module if any), captured on CUDA."""
    import os

    _require_cuda()
    model = create_model()
    here = globals().get("__file__")
    path = weights if weights is not None else (os.path.splitext(here)[0] + ".pth" if here else None)
    if path is not None and (weights is not None or os.path.exists(path)):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return CUDAGraphRunner(model, shape, device, warmup)
'''

_ACTS = {"F.relu": "relu", "F.silu": "silu", "F.gelu": "gelu", "torch.sigmoid": "sigmoid", "F.hardswish": "hardswish"}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _act(value: ast.expr, arg: str) -> str | None:
    if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords and isinstance(value.args[0], ast.Name) \
            and value.args[0].id == arg:
        return _ACTS.get(_name(value.func) or "")
    return None


def _self_call(value: ast.expr, convs: set[str]) -> tuple[str, str] | None:
    if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords and isinstance(value.args[0], ast.Name):
        f = value.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self" and f.attr in convs:
            return f.attr, value.args[0].id
    return None


def dwpw_rewrite(source: str) -> tuple[str, int]:
    """Rewrite conv k×k → [act] → conv 1×1 [→ act] [+ residual] chains of every forward into ``dwpw`` calls.

    Only chains whose intermediate values have one use are rewritten; whether the Triton kernel
    applies (stride, padding, groups, dtype, device) is decided at run time by ``dwpw_path``.
    Returns the new source and the number of chains.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    edits: dict[int, tuple[int, list[str] | None]] = {}
    count = sum(_rewrite_class(cls, edits) for cls in tree.body if isinstance(cls, ast.ClassDef))
    out: list[str] = []
    i = 1
    while i <= len(lines):
        if i in edits:
            end, new = edits[i]
            out += new or []
            i = end + 1
            continue
        out.append(lines[i - 1])
        i += 1
    text = "\n".join(out) + "\n"
    ast.parse(text)
    return text, count


def _rewrite_class(cls: ast.ClassDef, edits: dict[int, tuple[int, list[str] | None]]) -> int:
    """Record the dwpw edits of one class's forward; returns the number of chains."""
    init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
    fwd = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "forward"), None)
    if init is None or fwd is None:
        return 0
    k1: set[str] = set()
    pw: set[str] = set()
    for st in init.body:
        if isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Attribute) and isinstance(st.value, ast.Call) \
                and _name(st.value.func) in ("nn.Conv2d", "FusedConv2d") and len(st.value.args) >= 3:
            k = st.value.args[2]
            (pw if isinstance(k, ast.Constant) and k.value == 1 else k1).add(st.targets[0].attr)
    body = fwd.body
    flow = Flow(body, [a.arg for a in fwd.args.args])

    count = 0
    done: set[int] = set()
    for i in range(len(body)):
        a = flow.assign(i)
        if a is None or i in done or (c1 := _self_call(a[1], k1)) is None:
            continue
        chain = [i]
        cur = a[0]
        act1 = act2 = "none"
        j = flow.only_consumer(i)
        if j is not None and (b := flow.assign(j)) is not None and (act := _act(b[1], cur)) is not None:
            act1, cur = act, b[0]
            chain.append(j)
            j = flow.only_consumer(j)
        if j is None or (b := flow.assign(j)) is None or (c2 := _self_call(b[1], pw)) is None or c2[1] != cur:
            continue
        cur = b[0]
        chain.append(j)
        residual = None
        j = flow.only_consumer(j)
        if j is not None and (b := flow.assign(j)) is not None and (act := _act(b[1], cur)) is not None:
            act2, cur = act, b[0]
            chain.append(j)
            j = flow.only_consumer(j)
        if j is not None and (b := flow.assign(j)) is not None and isinstance(b[1], ast.BinOp) and isinstance(b[1].op, ast.Add) \
                and isinstance(b[1].left, ast.Name) and isinstance(b[1].right, ast.Name) \
                and (b[1].left.id == cur) != (b[1].right.id == cur):
            other = b[1].right.id if b[1].left.id == cur else b[1].left.id
            if flow.same_value(other, i, j) and other not in flow.writes[i]:
                residual, cur = other, b[0]
                chain.append(j)
        if not flow.can_hoist(cur, i, chain) or not flow.same_value(c1[1], i, i):
            continue
        call = f"dwpw(self.{c1[0]}, self.{c2[0]}, {c1[1]}, {act1!r}, {act2!r}" + (f", residual={residual})" if residual else ")")
        for idx in chain[1:]:
            edits[body[idx].lineno] = (body[idx].end_lineno or body[idx].lineno, None)
        first = body[i]
        edits[first.lineno] = (first.end_lineno or first.lineno, [" " * 8 + f"{cur} = {call}"])
        done.update(chain)
        count += 1
    return count


def cudagraph_source(module_source: str, shape: tuple[int, ...], fused: bool = False) -> tuple[str, list[str]]:
    """The cudagraph artifact for a generated module: (fused: dwpw chains +) the runner. Returns source and notes."""
    notes: list[str] = []
    src = module_source
    if fused:
        src, n = dwpw_rewrite(src)
        notes.append(f"{n} conv k×k → conv 1×1 chain(s) call the generated Triton kernel on CUDA (dwpw)")
        src = src.rstrip("\n") + "\n\n" + emit_runtime().rstrip("\n") + "\n" + emit_choice().rstrip("\n") + "\n"
    src = src.rstrip("\n") + "\n" + RUNNER_SOURCE.format(shape=tuple(int(d) for d in shape)).rstrip("\n") + "\n"
    ast.parse(src)
    return src, notes
