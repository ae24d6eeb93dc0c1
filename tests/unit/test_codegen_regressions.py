"""Regressions of the PyTorch code generator found by the random-spec property tests.

Each test compiles a small spec, imports the generated module from a real file and checks that it
runs and computes what the spec says (the failures were silent wrong results as often as crashes).
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from archc.compiler import CompileOptions, CompileResult, compile_spec
from archc.diagnostics import SpecError


def _build(text: str, tmp_path: Path) -> tuple[CompileResult, Any, torch.nn.Module]:
    res = compile_spec("regression.yaml", CompileOptions(), text=text)
    name = f"regression_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(res.source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    model = mod.create_model().eval()
    assert sum(p.numel() for p in model.parameters()) == res.cost.params
    return res, mod, model


def test_multi_output_variables_do_not_overwrite_a_node(tmp_path: Path) -> None:
    """Output 0 of chunk 'sp' was the local 'sp_0', which the later node 'sp_0' overwrote."""
    text = """
archc: 1
name: r
inputs: {x: [B, 4, 8, 8]}
graph:
  - sp: {op: chunk, chunks: 2}
  - sp_0: {op: conv2d, in: sp.1, out: 2, kernel: 1}
  - o: {op: add, in: [sp.0, sp_0]}
"""
    _, _, model = _build(text, tmp_path)
    x = torch.randn(2, 4, 8, 8)
    a, b = x.chunk(2, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), a + model.sp_0(b))


def test_loop_variable_does_not_shadow_an_input(tmp_path: Path) -> None:
    """A repeat with an extra input looped 'for blk in ...', clobbering the block input 'blk'."""
    text = """
archc: 1
name: r
inputs: {x: [B, 4, 8, 8]}
blocks:
  add2:
    inputs: [x, y]
    graph:
      - o: {op: add, in: [x, y]}
  outer:
    inputs: [blk]
    graph:
      - r: {op: add2, in: [blk, blk], repeat: 2}
graph:
  - o: {op: outer}
"""
    _, _, model = _build(text, tmp_path)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(model(x), 3 * x)


def test_value_attribute_does_not_clobber_a_module(tmp_path: Path) -> None:
    """A per-instance value went to 'self.pool_keepdim', the attribute of the module node 'pool_keepdim'."""
    text = """
archc: 1
name: r
inputs: {x: [B, 4, 8, 8]}
blocks:
  bb:
    params: {k: bool}
    graph:
      - pool: {op: global_avgpool, keepdim: "${k}"}
      - pool_keepdim: {op: conv2d, in: x, out: 4, kernel: 1}
      - s: {op: add, in: [pool, pool]}
    outputs: [s, pool_keepdim]
graph:
  - a: {op: bb, k: true}
  - b: {op: bb, in: x, k: false}
outputs: [a.0, b.0, b.1]
"""
    _, _, model = _build(text, tmp_path)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        a, b, conv = model(x)
        torch.testing.assert_close(a, 2 * x.mean([2, 3], keepdim=True))
        torch.testing.assert_close(b, 2 * x.mean([2, 3]))
        torch.testing.assert_close(conv, model.b.pool_keepdim(x))


@pytest.mark.parametrize("param", ["nn", "torch", "self", "super", "max", "i", "Blk", "range"])
def test_block_param_named_like_a_name_the_code_uses(param: str, tmp_path: Path) -> None:
    """Constructor arguments named after a block param shadowed nn / torch / builtins / classes (or
    were a SyntaxError, 'self'); 'i' is also the variable of generated loops."""
    text = f"""
archc: 1
name: r
inputs: {{x: [B, 4, 8, 8]}}
blocks:
  blk:
    params: {{c: int}}
    graph:
      - conv: {{op: conv2d, out: "${{c}}", kernel: 1}}
  b:
    params: {{{param}: int, d: int}}
    graph:
      - c1: {{op: conv2d, out: "${{max(2, {param} // 2)}}", kernel: 1}}
      - rep: {{op: blk, repeat: "${{d}}", c: "${{{param} % 1 + 4 + 2 * i}}"}}
      - p: {{op: param, shape: "${{[{param} - {param} + 2 * d + 2, 1, 1]}}"}}
      - o: {{op: mul, in: [rep, p]}}
graph:
  - a: {{op: b, {param}: 4, d: 2}}
  - b2: {{op: b, {param}: 8, d: 3}}
"""
    res, _, model = _build(text, tmp_path)
    with torch.no_grad():
        y = model(torch.randn(2, 4, 8, 8))
    assert tuple(y.shape) == res.graph.output_types[0].concrete(2) == (2, 8, 8, 8)
    torch.jit.script(model)


def test_loop_count_is_not_explained_by_a_param_named_n(tmp_path: Path) -> None:
    """Inside a repeat, 'n' is the item count: a block param also named 'n' must not explain it."""
    text = """
archc: 1
name: r
inputs: {x: [B, 4, 8, 8]}
blocks:
  inner:
    params: {c: int}
    graph:
      - conv: {op: conv2d, out: "${c}", kernel: 1}
  outer:
    params: {n: int, d: int}
    graph:
      - r: {op: inner, repeat: "${d}", c: "${n}"}
graph:
  - a: {op: outer, n: 5, d: 2}
  - b: {op: outer, n: 3, d: 3}
"""
    res, _, model = _build(text, tmp_path)
    with torch.no_grad():
        y = model(torch.randn(1, 4, 8, 8))
    assert tuple(y.shape) == res.graph.output_types[0].concrete(1) == (1, 3, 8, 8)


@pytest.mark.parametrize("spec_name,block", [("r", "f"), ("r", "tuple"), ("f", "blk")])
def test_block_and_spec_named_like_module_names(spec_name: str, block: str, tmp_path: Path) -> None:
    """A block or spec named 'f' became class F (shadowing torch.nn.functional), 'tuple' class Tuple
    (shadowing typing.Tuple in later return annotations)."""
    text = f"""
archc: 1
name: {spec_name}
inputs: {{x: [B, 4, 8, 8]}}
blocks:
  {block}:
    graph:
      - c: {{op: conv2d, out: 4}}
      - r: gelu
    outputs: [r, x]
graph:
  - a: {{op: {block}}}
  - s: {{op: add, in: [a.0, a.1]}}
  - g: gelu
outputs: [g, a.1]
"""
    _, _, model = _build(text, tmp_path)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        g, a1 = model(x)
        torch.testing.assert_close(g, F.gelu(F.gelu(model.a.c(x)) + x))
        torch.testing.assert_close(a1, x)
    torch.jit.script(model)


def test_block_inputs_named_like_names_the_code_uses(tmp_path: Path) -> None:
    """Forward arguments named 'self' or 'torch' were a SyntaxError or shadowed the torch module."""
    text = """
archc: 1
name: r
inputs: {a: [B, 4, 8, 8], b: [B, 4, 8, 8]}
blocks:
  b:
    inputs: [self, torch]
    graph:
      - c: {op: concat, in: [self, torch]}
      - s: {op: softmax, dim: 1}
graph:
  - o: {op: b, in: [b, a]}
"""
    _, _, model = _build(text, tmp_path)
    x, y = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(model(x, y), torch.cat([y, x], 1).softmax(1))
    torch.jit.script(model)


@pytest.mark.parametrize("doc", ['Gate "g"', "C:\\specs\\x.yaml", 'a """quoted""" doc', "uses \\N and \\alpha",
                                 "ends with \\", "nul\x00 and cr\r"])
def test_docs_are_escaped_in_docstrings(doc: str, tmp_path: Path) -> None:
    """Docs went into triple-quoted docstrings verbatim: a final quote or a backslash broke the file."""
    quoted = '"' + doc.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "\\0").replace("\r", "\\r") + '"'
    text = f"""
archc: 1
name: {quoted}
doc: {quoted}
inputs: {{x: [B, 4, 8, 8]}}
blocks:
  b:
    doc: {quoted}
    graph: [relu]
graph:
  - {{op: b}}
"""
    _, mod, model = _build(text, tmp_path)
    assert type(model.b).__doc__ == doc.strip()
    assert type(model).__doc__ == doc.strip()
    assert mod.__doc__.startswith(doc.strip() + ": generated by archc")


@pytest.mark.parametrize("first,second", [("4", "4.0"), ("4.0", "4"), ("true", "1")])
def test_block_memo_tells_equal_values_of_different_types_apart(first: str, second: str) -> None:
    """Bodies were memoized by param values compared with ==: after b(c=4), the call b(c=4.0) reused
    the valid body instead of being rejected, so whether a spec compiled depended on call order."""
    body = '{op: conv2d, out: "${c}", kernel: 1}' if first != "true" else '{op: relu, when: "${c}"}'
    text = f"""
archc: 1
name: r
inputs: {{x: [B, 4, 8, 8]}}
blocks:
  b:
    params: {{c: any}}
    graph:
      - n: {body}
graph:
  - a: {{op: b, c: {first}}}
  - a2: {{op: b, c: {second}}}
"""
    with pytest.raises(SpecError, match="must be"):
        compile_spec("regression.yaml", CompileOptions(), text=text)


@pytest.mark.parametrize("skip", ["when: false", "repeat: 0"])
def test_skipped_node_passes_a_named_output_through(skip: str, tmp_path: Path) -> None:
    """After a skipped node that read 'sp.1', the next node without 'in' was rejected as if it read the
    two-output node 'sp' itself ("say which one"), though the value passed through is sp.1."""
    text = f"""
archc: 1
name: r
inputs: {{x: [B, 4, 8, 8]}}
graph:
  - sp: {{op: chunk, chunks: 2}}
  - skipped: {{op: conv2d, in: sp.1, out: 2, {skip}}}
  - r: relu
"""
    _, _, model = _build(text, tmp_path)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(model(x), x.chunk(2, 1)[1].relu())
    ambiguous = text.replace("in: sp.1, ", "")
    with pytest.raises(SpecError, match="say which one"):
        compile_spec("regression.yaml", CompileOptions(), text=ambiguous)


def test_input_less_node_after_a_multi_output_node(tmp_path: Path) -> None:
    """A param (no inputs) right after a two-output node was rejected: "say which one this node reads"."""
    text = """
archc: 1
name: r
inputs: {x: [B, 4, 8, 8]}
graph:
  - sp: {op: chunk, chunks: 2}
  - p: {op: param, shape: [2, 1, 1], init: ones}
  - o: {op: mul, in: [sp.1, p]}
"""
    _, _, model = _build(text, tmp_path)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(model(x), x.chunk(2, 1)[1])


def test_deploy_keeps_empty_items_of_a_repeat(tmp_path: Path) -> None:
    """A stage with zero blocks is a pass-through item of the stages repeat (LSNet-T's first stage);
    inline_blocks dropped it, leaving a repeat without item 0, and code generation failed."""
    text = """
archc: 1
name: r
params: {depth: [0, 1]}
inputs: {x: [B, 4, 8, 8]}
blocks:
  unit:
    params: {c: int}
    graph:
      - conv: {op: conv2d, out: "${c}", kernel: 3}
      - bn: {op: batchnorm}
  stage:
    params: {c: int, depth: int}
    graph:
      - blocks: {op: unit, repeat: "${depth}", c: "${c}"}
graph:
  - stages: {op: stage, repeat: 2, c: 4, depth: "${depth[i]}"}
"""
    res = compile_spec("regression.yaml", CompileOptions(pipeline="deploy"), text=text)
    assert res.pipeline is not None and res.cost.params == 4 * 4 * 9 + 4
    assert "BatchNorm" not in res.source and "self.bn" not in res.source


def test_float64_input_gives_a_float64_model(tmp_path: Path) -> None:
    """A spec whose input is float64 produced a float32 module that rejected its own input."""
    text = """
archc: 1
name: r
inputs: {x: {shape: [B, 3, 8, 8], dtype: float64}}
graph:
  - conv: {op: conv2d, out: 4, kernel: 3}
  - bn: batchnorm
  - act: gelu
"""
    res, _, model = _build(text, tmp_path)
    assert "torch.float64" in res.source
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with torch.no_grad():
        y = model(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (2, 4, 8, 8)
