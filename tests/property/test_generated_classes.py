"""Generated classes are right as code, not only for the instances they were generated from.

For every block class generated from every bundled spec, every int constructor argument that is a
block param is changed to a value no instance used (a few candidates; one the spec accepts is
kept), and the class is built with it. The spec's block is expanded with the same values — the
reference — and the two must agree on the parameter count and the output shapes. A class that
assumed an input size equal to a param (its input interface) gets an input of the new size.

Modules are built on the meta device, so shapes and counts cost nothing to check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from archc.backends.pytorch.codegen import generate_classes

from archc.compiler import CompileOptions, block_info, build_graph
from archc.cost.model import graph_cost
from archc.diagnostics import ArchcError
from archc.ir.types import TensorType
from archc.passes.equivalence import module_from_source
from archc.spec.expand import _Expander

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def _candidates(old: int, seen: set[int]) -> list[int]:
    """Values near and far from ``old`` that no instance used (positive, small enough to build)."""
    out = []
    for v in (old + 1, old + 2, old * 2, old - 1, old + 8, old * 3, max(1, old // 2), old + 16):
        if v >= 1 and v not in seen and v not in out and v <= max(4 * old, 64):
            out.append(v)
    return out


def _reference(doc: Any, block: str, env: dict[str, Any], in_types: list[TensorType]) -> tuple[int, list[tuple[int, ...]]] | None:
    """(params, output shapes at batch 1) of the spec's block expanded with ``env``; None if the spec refuses."""
    bd = doc.blocks[block]
    try:
        body = _Expander(doc).graph(bd.name, bd.graph, env, dict(zip(bd.inputs, in_types)), bd.outputs, bd.loc)
    except ArchcError:
        return None
    return graph_cost(body).params, [t.concrete(1) for t in body.output_types]


def _built(mod: Any, cls_name: str, kwargs: dict[str, Any], in_types: list[TensorType]) -> tuple[int, list[tuple[int, ...]]]:
    with torch.device("meta"):
        m = getattr(mod, cls_name)(**kwargs).eval()
        xs = [torch.empty(t.concrete(1), dtype=getattr(torch, t.dtype)) for t in in_types]
        with torch.no_grad():
            out = m(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    return sum(p.numel() for p in m.parameters()), [tuple(o.shape) for o in outs]


def _case(path: Path) -> list[str]:
    """Check every class of ``path``; returns the failures (empty when all agree)."""
    torch.set_num_threads(1)
    doc, graph = build_graph(path, CompileOptions())
    src, classes = generate_classes(graph, graph.meta["spec_label"], doc.name, block_info(doc))
    mod = module_from_source(src)
    failures: list[str] = [f"{path.name}: class {b} is class {a} under another name" for a, b in _same_text(src)]
    checked = 0
    for cls in classes:
        if cls.block is None or cls.block not in doc.blocks:
            continue
        inst = cls.instances[0]
        env = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (inst.params or {}).items()}
        in_types = list(inst.meta["in_types"])
        inputs = list(doc.blocks[cls.block].inputs)
        # explicit arguments (values nothing in the spec derives) are the caller's to keep consistent:
        # a class that has any is checked only through its derived values, i.e. not here
        if any(cls.param_of(a) is None and cls.extra_origin.get(a, ("",))[0] != "in" for a, _ in cls.args):
            continue
        for arg, _ in cls.args:
            param = cls.param_of(arg)
            if param is None or type(env.get(param)) is not int:
                continue
            seen = {(n.params or {}).get(param) for n in cls.instances}
            for new in _candidates(env[param], seen):  # type: ignore[arg-type]
                env2 = {**env, param: new}
                types2 = []
                for name, t in zip(inputs, in_types):
                    shape = list(t.shape)
                    for (iname, axis), p in cls.bindings.items():
                        if iname == name:
                            shape[axis] = env2[p]
                    types2.append(t.with_shape(tuple(shape)))
                ref = _reference(doc, cls.block, env2, types2)
                if ref is None:
                    continue  # outside the block's valid range: try another value
                kwargs = {}
                for a, _ in cls.args:
                    p = cls.param_of(a)
                    if p is not None:
                        kwargs[a] = env2[p]
                    elif a in cls.extra_origin and cls.extra_origin[a][0] == "in":
                        _, iname, axis = cls.extra_origin[a]
                        kwargs[a] = types2[inputs.index(iname)].shape[axis]
                    else:
                        kwargs[a] = cls.extra[a][0]
                try:
                    got = _built(mod, cls.name, kwargs, types2)
                except ValueError as exc:
                    if "is generated for arguments with" in str(exc):
                        continue  # the class refuses, loudly, values that change its structure
                    got = (-1, [(type(exc).__name__, str(exc).splitlines()[0][:120])])  # type: ignore[list-item]
                except Exception as exc:  # noqa: BLE001 - the failure is the finding
                    got = (-1, [(type(exc).__name__, str(exc).splitlines()[0][:120])])  # type: ignore[list-item]
                if got != ref:
                    failures.append(f"{path.name}: {cls.name}({param}={new}, was {env[param]}): module {got} != spec {ref}")
                checked += 1
                break
    assert checked or not any(c.block for c in classes if c.args), f"{path.name}: no class could be checked"
    return failures


def _same_text(src: str) -> list[tuple[str, str]]:
    """Pairs of generated classes whose text is the same but for their own names."""
    seen: dict[str, str] = {}
    pairs = []
    for chunk in re.split(r"\n(?=class \w+\(nn\.Module\):)", src)[1:]:
        name = re.match(r"class (\w+)", chunk).group(1)  # type: ignore[union-attr]
        body = re.sub(rf"\b{name}\b", "<self>", chunk.split("\n\n\n")[0].rstrip())
        if body in seen:
            pairs.append((seen[body], name))
        seen.setdefault(body, name)
    return pairs


def test_same_text_finds_a_renamed_copy() -> None:
    one = "class ConvBn(nn.Module):\n    def forward(self, x):\n        return x\n"
    assert _same_text("head\n" + one + "\n\n" + one.replace("ConvBn", "ConvBn2")) == [("ConvBn", "ConvBn2")]
    assert _same_text("head\n" + one + "\n\n" + one.replace("ConvBn", "Other").replace("x", "y")) == []


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_classes_right_for_unseen_arguments(path: Path) -> None:
    failures = _case(path)
    assert not failures, "\n".join(failures)


def test_changed_kernel_keeps_same_padding() -> None:
    """The motivating case: a conv-BN block reused with a kernel size no instance had pads by the rule."""
    doc, graph = build_graph(ROOT / "specs/convfirst.yaml", CompileOptions())
    src, _ = generate_classes(graph, graph.meta["spec_label"], doc.name, block_info(doc))
    mod = module_from_source(src)
    for k in (5, 7, 9):
        m = mod.ConvBn(cout=8, k=k, s=1, groups=1, in_channels=8).eval()
        y = m(torch.zeros(1, 8, 32, 32))
        assert tuple(y.shape) == (1, 8, 32, 32), k
        assert m.conv.padding == ((k - 1) // 2,) * 2
    assert "k // 3" not in src
