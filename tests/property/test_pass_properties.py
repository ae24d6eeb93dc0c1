"""Property tests of the passes on random graphs full of reparameterizable patterns.

Graphs are drawn as specs (so expansion, block sharing and repeats take part): chains of
conv → BN → act, BN → conv (unpadded, zero-padded, reflect-padded), sums of parallel branches (odd and
even kernels, dilations, strides, groups up to depthwise, identity and BN-only branches, random add
trees, conv branches with and without their own BN), CDC convs, layer scales after convs and
channels-last linears (and over the wrong axis), GRN before 1×1 convs / linears, train-only ops,
common subexpressions and dead code — some wrapped in blocks, some repeated — optionally ending in a
rank-2 head (linear / BN / layer scale) and with an intermediate value as a second output.

For each pass (run on the graph as drawn, or after the deploy passes that precede it) and for the whole
deploy pipeline: outputs are preserved (float64 ≤ 1e-9) with weights converted by the weight map
alone, output shapes are preserved, the IR verifies, a second run rewrites nothing, and MACs never
increase.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from archc.cost.model import graph_cost
from archc.ir.graph import Graph
from archc.ir.verify import verify
from archc.passes.base import PASSES
from archc.passes.pipeline import PIPELINES, run_pipeline
from tests.numerics.pass_cases import converted_error, graph_of

PASS_NAMES = ("remove_train_only", "fold_cdc", "fold_bn", "inline_blocks", "merge_branches", "fold_scales", "cse", "dce")
#: examples per pass (the pipeline test draws 3×); raise ARCHC_PASS_EXAMPLES to hunt for bugs
EXAMPLES = int(os.environ.get("ARCHC_PASS_EXAMPLES", "20"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread avoids thread thrashing on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- random specs ------------------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class _Scope:
    """Items of one graph body being drawn, with fresh node ids."""

    def __init__(self, tag: str) -> None:
        self.items: list[dict[str, Any]] = []
        self.tag = tag
        self.n = 0

    def add(self, name: str, node: dict[str, Any]) -> str:
        self.n += 1
        nid = f"{name}{self.n}"
        self.items.append({nid: node})
        return nid


Shape = tuple[int, int, int]  # C, H, W


def _channels(draw: Any, c: int) -> tuple[int, int]:
    """(groups, out channels): groups divide c, out a multiple of groups (depthwise included)."""
    g = draw(st.sampled_from(_divisors(c)))
    mults = [1, 2] if g <= 4 else [1]
    return g, g * draw(st.sampled_from(mults))


def _conv_bn_act(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    c, h, w = shp
    k = [draw(st.integers(1, 7)), draw(st.integers(1, 7))]
    d = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    for i, size in enumerate((h, w)):
        if size < 2:  # an even extent with its default padding d(k−1)//2 needs two pixels
            k[i], d[i] = 1, 1
    s = draw(st.integers(1, 2))
    g, cout = _channels(draw, c)
    attrs: dict[str, Any] = {"op": "conv2d", "in": x, "out": cout, "kernel": list(k), "dilation": list(d), "stride": s,
                             "groups": g, "bias": draw(st.booleans())}
    fits_unpadded = all(d[i] * (k[i] - 1) + 1 <= (h, w)[i] for i in range(2))
    if fits_unpadded and draw(st.booleans()):
        attrs["padding"] = 0
    pad = (0, 0) if "padding" in attrs else tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
    y = sc.add("conv", attrs)
    ho, wo = _out(h, k[0], s, pad[0], d[0]), _out(w, k[1], s, pad[1], d[1])
    if draw(st.booleans()):
        y = sc.add("bn", {"op": "batchnorm", "affine": draw(st.booleans()), "eps": draw(st.sampled_from([0.001, 0.1]))})
    act = draw(st.sampled_from([None, "relu", "gelu"]))
    if act:
        y = sc.add(act, {"op": act})
    return y, (cout, ho, wo)


def _bn_conv(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    c, h, w = shp
    bn = sc.add("bn", {"op": "batchnorm", "in": x, "affine": draw(st.booleans())})
    k = (draw(st.integers(1, min(5, h))), draw(st.integers(1, min(5, w))))
    g, cout = _channels(draw, c)
    attrs: dict[str, Any] = {"op": "conv2d", "in": bn, "out": cout, "kernel": list(k), "groups": g, "bias": draw(st.booleans())}
    mode = draw(st.sampled_from(["unpadded", "zeros", "reflect"]))
    pad = (0, 0)
    if mode == "unpadded":
        attrs["padding"] = 0
    else:
        pad = ((k[0] - 1) // 2, (k[1] - 1) // 2)  # the default padding
        if mode == "reflect":
            attrs["padding_mode"] = "reflect"
    y = sc.add("conv", attrs)
    return y, (cout, _out(h, k[0], 1, pad[0], 1), _out(w, k[1], 1, pad[1], 1))


def _branches(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    c, h, w = shp
    s = draw(st.integers(1, 2))
    even = min(h, w) >= 2 and draw(st.booleans())  # even extents shrink the map by one pixel
    identity_ok = s == 1 and not even
    g = draw(st.sampled_from(_divisors(c)))
    cout = c if identity_ok and draw(st.booleans()) else g * draw(st.sampled_from([1, 2] if g <= 4 else [1]))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect"]))
    leaves: list[str] = []
    convs: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        if even:  # even extent: even kernel, odd dilation, padding (d(k−1) − 1)/2 — all offsets −1
            k = [draw(st.sampled_from([2, 4, 6])) for _ in range(2)]
            d = [draw(st.sampled_from([1, 3])) if k[i] == 2 else 1 for i in range(2)]
            p = [(d[i] * (k[i] - 1) - 1) // 2 for i in range(2)]
        else:  # odd extent, centred ('same' padding)
            k = [draw(st.sampled_from([1, 3, 5, 7])) for _ in range(2)]
            d = [draw(st.integers(1, 3)) if k[i] <= 3 else 1 for i in range(2)]
            p = [d[i] * (k[i] - 1) // 2 for i in range(2)]
        if max(p) >= min(h, w):  # reflect padding must be smaller than the input
            mode = "zeros"
        y = sc.add("br", {"op": "conv2d", "in": x, "out": cout, "kernel": k, "dilation": d, "padding": p, "stride": s,
                          "groups": g, "bias": draw(st.booleans()), "padding_mode": mode})
        convs.append(y)
        if draw(st.booleans()):
            y = sc.add("brbn", {"op": "batchnorm", "in": y})
        leaves.append(y)
    if identity_ok and cout == c:
        if draw(st.booleans()):
            leaves.append(x)
        if draw(st.booleans()):
            leaves.append(sc.add("idbn", {"op": "batchnorm", "in": x}))
    for item in sc.items:
        node = next(iter(item.values()))
        if next(iter(item)) in convs:
            node["padding_mode"] = mode
    while len(leaves) > 1:  # a random add tree
        i = draw(st.integers(0, len(leaves) - 1))
        a = leaves.pop(i)
        j = draw(st.integers(0, len(leaves) - 1))
        b = leaves.pop(j)
        leaves.append(sc.add("sum", {"op": "add", "in": [a, b]}))
    y = leaves[0]
    if y == x:
        y = sc.add("id", {"op": "identity", "in": x})
    off = -1 if even else 0
    out_shape = (cout, (h + off - 1) // s + 1, (w + off - 1) // s + 1)
    if draw(st.integers(0, 4)) == 0:  # a branch also used outside the sum: must not merge
        y = sc.add("reuse", {"op": "mul", "in": [y, convs[0]]})
    if draw(st.booleans()):
        y = sc.add("post", {"op": "batchnorm", "in": y})
    if draw(st.booleans()):
        y = sc.add("act", {"op": "relu", "in": y})
    return y, out_shape


def _layer_scale(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    c, h, w = shp
    kind = draw(st.sampled_from(["conv", "linear", "wrong_axis"]))
    init = draw(st.sampled_from([0.5, 1e-2, 1.0]))
    if kind == "linear":
        y = sc.add("nhwc", {"op": "permute", "in": x, "dims": [0, 2, 3, 1]})
        cout = draw(st.integers(1, 8))
        y = sc.add("fc", {"op": "linear", "out": cout, "bias": draw(st.booleans())})
        y = sc.add("ls", {"op": "layer_scale", "channels_last": True, "bias": draw(st.booleans()), "init": init})
        y = sc.add("nchw", {"op": "permute", "dims": [0, 3, 1, 2]})
        return y, (cout, h, w)
    cout = w if kind == "wrong_axis" else draw(st.integers(1, 8))
    k = draw(st.sampled_from([1, 3]))
    y = sc.add("conv", {"op": "conv2d", "in": x, "out": cout, "kernel": k, "bias": draw(st.booleans())})
    ls: dict[str, Any] = {"op": "layer_scale", "init": init, "bias": draw(st.booleans())}
    if kind == "wrong_axis":  # scales W (== C by construction), not the conv's channels
        ls = {"op": "layer_scale", "init": init, "channels_last": True}
    y = sc.add("ls", ls)
    return y, (cout, h, w)


def _grn(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    c, h, w = shp
    cout = draw(st.integers(1, 8))
    if draw(st.booleans()):
        y = sc.add("grn", {"op": "grn", "in": x, "bias": draw(st.booleans())})
        s = draw(st.integers(1, 2))
        y = sc.add("pw", {"op": "conv2d", "out": cout, "kernel": 1, "stride": s, "bias": draw(st.booleans())})
        return y, (cout, (h - 1) // s + 1, (w - 1) // s + 1)
    y = sc.add("nhwc", {"op": "permute", "in": x, "dims": [0, 2, 3, 1]})
    y = sc.add("grn", {"op": "grn", "channels_last": True, "bias": draw(st.booleans())})
    y = sc.add("fc", {"op": "linear", "out": cout, "bias": draw(st.booleans())})
    y = sc.add("nchw", {"op": "permute", "dims": [0, 3, 1, 2]})
    return y, (cout, h, w)


def _cdc(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    c, h, w = shp
    k = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5])))
    d = draw(st.integers(1, 2))
    s = draw(st.integers(1, 2))
    g, cout = _channels(draw, c)
    y = sc.add("cdc", {"op": "cdc_conv2d", "in": x, "out": cout, "kernel": list(k), "dilation": d, "stride": s, "groups": g,
                       "bias": draw(st.booleans()), "theta": draw(st.sampled_from([0.0, 0.5, 0.7, 1.0]))})
    if draw(st.booleans()):
        y = sc.add("bn", {"op": "batchnorm"})
    p = (d * (k[0] - 1) // 2, d * (k[1] - 1) // 2)
    return y, (cout, _out(h, k[0], s, p[0], d), _out(w, k[1], s, p[1], d))


def _cleanup(draw: Any, sc: _Scope, x: str, shp: Shape) -> tuple[str, Shape]:
    y = x
    for op in draw(st.lists(st.sampled_from(["dropout", "drop_path", "identity", "cse", "dead"]), min_size=1, max_size=3)):
        if op == "cse":
            a = sc.add("r", {"op": "relu", "in": y})
            b = sc.add("r", {"op": "relu", "in": y})
            y = sc.add("sum", {"op": "add", "in": [a, b]})
        elif op == "dead":
            sc.add("dead", {"op": "conv2d", "in": y, "out": 2, "kernel": 1})
        elif op == "identity":
            y = sc.add("idn", {"op": "identity", "in": y})
        else:
            y = sc.add(op, {"op": op, "in": y, "p": 0.2})
    return y, shp


def _head(draw: Any, sc: _Scope, x: str, shp: Shape) -> str:
    """Pool → flatten → linear → BN → (layer scale) → BN → linear: rank-2 BN and layer-scale folds."""
    y = sc.add("pool", {"op": "global_avgpool", "in": x})
    y = sc.add("flat", {"op": "flatten"})
    if draw(st.booleans()):
        y = sc.add("fc", {"op": "linear", "out": draw(st.integers(1, 8)), "bias": draw(st.booleans())})
    if draw(st.booleans()):
        y = sc.add("bn", {"op": "batchnorm", "affine": draw(st.booleans())})
    if draw(st.booleans()):
        cl = draw(st.booleans())  # on (B, C) both axis conventions scale C; a bias needs channels_last here
        y = sc.add("ls", {"op": "layer_scale", "init": 0.5, "channels_last": cl, "bias": cl and draw(st.booleans())})
    if draw(st.booleans()):
        y = sc.add("act", {"op": "gelu"})
    if draw(st.booleans()):
        y = sc.add("bn", {"op": "batchnorm", "in": y})
    return sc.add("cls", {"op": "linear", "in": y, "out": draw(st.integers(1, 5)), "bias": draw(st.booleans())})


MOTIFS = {"conv_bn_act": _conv_bn_act, "bn_conv": _bn_conv, "branches": _branches, "layer_scale": _layer_scale,
          "grn": _grn, "cdc": _cdc, "cleanup": _cleanup}


@st.composite
def reparam_specs(draw: Any) -> str:
    """The text of a random spec built from reparameterizable motifs."""
    c, h, w = draw(st.sampled_from([2, 3, 4, 6])), draw(st.integers(4, 9)), draw(st.integers(4, 9))
    main = _Scope("main")
    blocks: dict[str, Any] = {}
    x, shp = "x", (c, h, w)
    for i, name in enumerate(draw(st.lists(st.sampled_from(sorted(MOTIFS)), min_size=1, max_size=3))):
        if draw(st.integers(0, 2)) == 0:  # wrapped in a block (maybe repeated)
            body = _Scope(f"m{i}")
            y, out = MOTIFS[name](draw, body, "x", shp)
            blocks[f"m{i}"] = {"graph": body.items, "outputs": [y]}
            node: dict[str, Any] = {"op": f"m{i}", "in": x}
            if out == shp and draw(st.booleans()):
                node["repeat"] = 2
            x, shp = main.add("blk", node), out
        else:
            x, shp = MOTIFS[name](draw, main, x, shp)
    outputs = [_head(draw, main, x, shp) if draw(st.integers(0, 3)) == 0 else x]
    inner = [next(iter(item)) for item in main.items]
    if inner and draw(st.integers(0, 3)) == 0:  # an intermediate value is an output too: it must survive
        outputs.append(draw(st.sampled_from(inner)))
    spec: dict[str, Any] = {"inputs": {"x": ["B", c, h, w]}}
    if blocks:
        spec["blocks"] = blocks
    spec["graph"] = main.items
    spec["outputs"] = outputs
    return "\n".join(f"{k}: {json.dumps(v)}" for k, v in spec.items())


# -- properties --------------------------------------------------------------------------------------


def _prefix(pass_name: str) -> tuple[str, ...]:
    deploy = PIPELINES["deploy"]
    return deploy[: deploy.index(pass_name)]


def _check(before: Graph, after: Graph, weight_fn: Any, rerun: int) -> None:
    verify(after)
    assert after.output_types == before.output_types
    assert graph_cost(after).macs <= graph_cost(before).macs
    assert rerun == 0, "not idempotent: a second run rewrote again"
    assert converted_error(before, after, weight_fn, torch.float64) <= 1e-9


@pytest.mark.parametrize("pass_name", PASS_NAMES)
@settings(max_examples=EXAMPLES, deadline=None)
@given(text=reparam_specs(), after_prefix=st.booleans())
def test_pass_properties(pass_name: str, text: str, after_prefix: bool) -> None:
    g = graph_of(text, "prop")
    if after_prefix and _prefix(pass_name):
        g = run_pipeline(g, passes=_prefix(pass_name), check=False).graph
    p = PASSES[pass_name]
    res = p.run(g)
    _check(g, res.graph, res.weights, p.run(res.graph).rewrites)


@settings(max_examples=3 * EXAMPLES, deadline=None)
@given(text=reparam_specs())
def test_deploy_pipeline_properties(text: str) -> None:
    g = graph_of(text, "prop")
    res = run_pipeline(g, check=False)
    again = run_pipeline(res.graph, check=False)
    _check(g, res.graph, res.convert, sum(s.rewrites for s in again.steps))


def _fired(text: str) -> set[str]:
    g = graph_of(text, "prop")
    fired = set()
    for name in PASS_NAMES:
        h = run_pipeline(g, passes=_prefix(name), check=False).graph if _prefix(name) else g
        fired |= {e.rule for e in PASSES[name].run(h, explain=True).explanations if e.fired}
    return fired


RULES = sorted({r.name for n in PASS_NAMES for r in PASSES[n].rules})  # type: ignore[attr-defined]


@pytest.mark.parametrize("rule", RULES)
def test_generator_reaches_rule(rule: str) -> None:
    """The drawn graphs give every rule sites where it fires (so the properties above exercise it)."""
    find(reparam_specs(), lambda text: rule in _fired(text),
         settings=settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate]))
