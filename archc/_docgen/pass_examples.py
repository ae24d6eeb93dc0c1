"""Worked examples of every pass, written in the spec language: the pass tests' cases and the docs' examples.

Each :class:`FireCase` is a ``before`` spec, the pass to run on it (or ``deploy``: the whole
pipeline), the rule it exercises and the ``expected`` spec of the result; each :class:`NoFireCase`
is a spec where the named rule must refuse, with a fragment of the condition ``archc explain`` must
name. ``tests/numerics`` runs every case (structure, numerical equivalence of the weight map,
``archc explain``); ``python -m archc._docgen --passes`` prints the cases of each pass in
docs/passes.md, with the *after* graph produced by running the pass. Specs are small so the
numerical tests stay fast.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from archc.ir.graph import Graph

__all__ = ["FireCase", "NoFireCase", "FIRE", "NO_FIRE", "example_graph", "spec_of"]


def spec_of(text: str, name: str = "case") -> str:
    """A complete spec file from a case's text: the ``archc: 1`` / ``name`` header added."""
    body = textwrap.dedent(text).strip("\n")
    return f"archc: 1\nname: {name}\n{body}\n"


def example_graph(text: str, name: str = "case", folder: Path | None = None) -> Graph:
    """The typed graph of a case's spec text (read as ``folder/name.yaml`` for diagnostics)."""
    from archc.compiler import CompileOptions, build_graph

    path = (folder or Path.cwd()) / f"{name}.yaml"
    return build_graph(path, CompileOptions(), text=spec_of(text, name))[1]


@dataclass(frozen=True)
class FireCase:
    """``before`` becomes ``expected`` under ``pass_name``; ``rule`` is the rule that fires."""

    id: str
    pass_name: str
    rule: str
    before: str
    expected: str


@dataclass(frozen=True)
class NoFireCase:
    """``rule`` of ``pass_name`` refuses every site of ``before``; ``archc explain`` says ``reason``."""

    id: str
    pass_name: str
    rule: str
    before: str
    reason: str


FIRE: list[FireCase] = [
    # -- fold_bn_into_prev ----------------------------------------------------------------------
    FireCase("conv_bn", "fold_bn", "fold_bn_into_prev", """
        inputs: {x: [B, 4, 9, 9]}
        graph:
          - conv: {op: conv2d, out: 6, kernel: 3, stride: 2, groups: 2, bias: false}
          - bn: batchnorm
          - act: relu
        """, """
        inputs: {x: [B, 4, 9, 9]}
        graph:
          - conv: {op: conv2d, out: 6, kernel: 3, stride: 2, groups: 2, bias: true}
          - act: relu
        """),
    FireCase("conv_bias_dilated_bn_noaffine", "fold_bn", "fold_bn_into_prev", """
        inputs: {x: [B, 4, 10, 10]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: [3, 5], dilation: 2, padding: [1, 0], bias: true}
          - bn: {op: batchnorm, affine: false, eps: 0.001}
        """, """
        inputs: {x: [B, 4, 10, 10]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: [3, 5], dilation: 2, padding: [1, 0], bias: true}
        """),
    FireCase("linear_bn", "fold_bn", "fold_bn_into_prev", """
        inputs: {x: [B, 12]}
        graph:
          - fc: {op: linear, out: 8, bias: false}
          - bn: batchnorm
          - act: gelu
        """, """
        inputs: {x: [B, 12]}
        graph:
          - fc: {op: linear, out: 8}
          - act: gelu
        """),
    FireCase("conv_bn_in_repeated_block", "fold_bn", "fold_bn_into_prev", """
        inputs: {x: [B, 4, 6, 6]}
        blocks:
          conv_bn:
            graph:
              - conv: {op: conv2d, out: 4, kernel: 3, bias: false}
              - bn: batchnorm
              - act: relu
        graph:
          - stage: {op: conv_bn, repeat: 2}
        """, """
        inputs: {x: [B, 4, 6, 6]}
        blocks:
          conv_bn:
            graph:
              - conv: {op: conv2d, out: 4, kernel: 3}
              - act: relu
        graph:
          - stage: {op: conv_bn, repeat: 2}
        """),
    # -- fold_bn_into_next ----------------------------------------------------------------------
    FireCase("bn_conv1x1", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - bn: batchnorm
          - conv: {op: conv2d, out: 8, kernel: 1, bias: false}
        """, """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 8, kernel: 1}
        """),
    FireCase("bn_grouped_conv_unpadded", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 4, 7, 7]}
        graph:
          - bn: batchnorm
          - conv: {op: conv2d, out: 6, kernel: 3, padding: 0, groups: 2, stride: 2}
        """, """
        inputs: {x: [B, 4, 7, 7]}
        graph:
          - conv: {op: conv2d, out: 6, kernel: 3, padding: 0, groups: 2, stride: 2}
        """),
    FireCase("bn_depthwise_conv_unpadded", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 4, 7, 7]}
        graph:
          - bn: {op: batchnorm, eps: 0.01}
          - dw: {op: conv2d, out: 8, kernel: [3, 2], padding: 0, groups: 4, bias: false}
          - act: relu
        """, """
        inputs: {x: [B, 4, 7, 7]}
        graph:
          - dw: {op: conv2d, out: 8, kernel: [3, 2], padding: 0, groups: 4}
          - act: relu
        """),
    FireCase("bn_conv_reflect_padded", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 3, 6, 6]}
        graph:
          - bn: batchnorm
          - conv: {op: conv2d, out: 4, kernel: 3, padding_mode: reflect}
        """, """
        inputs: {x: [B, 3, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 3, padding_mode: reflect}
        """),
    FireCase("bn_linear", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 12]}
        graph:
          - bn: batchnorm
          - fc: {op: linear, out: 5, bias: false}
        """, """
        inputs: {x: [B, 12]}
        graph:
          - fc: {op: linear, out: 5}
        """),
    # -- merge_parallel_convs -------------------------------------------------------------------
    FireCase("repvgg", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 8, 8, 8]}
        graph:
          - dense: {op: conv2d, in: x, out: 8, kernel: 3}
          - pw: {op: conv2d, in: x, out: 8, kernel: 1}
          - idbn: {op: batchnorm, in: x}
          - sum: {op: add, in: [dense, pw]}
          - sum2: {op: add, in: [sum, idbn]}
          - act: relu
        """, """
        inputs: {x: [B, 8, 8, 8]}
        graph:
          - sum2: {op: conv2d, out: 8, kernel: 3, padding: 1}
          - act: relu
        """),
    FireCase("acnet", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 6, 7, 7]}
        graph:
          - sq: {op: conv2d, in: x, out: 4, kernel: 3, stride: 2, bias: false}
          - hor: {op: conv2d, in: x, out: 4, kernel: [1, 3], stride: 2, bias: false}
          - ver: {op: conv2d, in: x, out: 4, kernel: [3, 1], stride: 2}
          - s1: {op: add, in: [sq, hor]}
          - s2: {op: add, in: [ver, s1]}
        """, """
        inputs: {x: [B, 6, 7, 7]}
        graph:
          - s2: {op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1}
        """),
    FireCase("dilated_reparam", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 12, 12]}
        graph:
          - big: {op: conv2d, in: x, out: 4, kernel: 7, groups: 4, bias: false}
          - d1: {op: conv2d, in: x, out: 4, kernel: 5, groups: 4}
          - d2: {op: conv2d, in: x, out: 4, kernel: 3, dilation: 2, groups: 4}
          - d3: {op: conv2d, in: x, out: 4, kernel: 3, dilation: 3, groups: 4, bias: false}
          - s1: {op: add, in: [big, d1]}
          - s2: {op: add, in: [s1, d2]}
          - s3: {op: add, in: [s2, d3]}
          - act: gelu
        """, """
        inputs: {x: [B, 4, 12, 12]}
        graph:
          - s3: {op: conv2d, out: 4, kernel: 7, groups: 4, padding: 3}
          - act: gelu
        """),
    FireCase("identity_plus_conv", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 3, bias: false}
          - res: {op: add, in: [x, conv]}
        """, """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - res: {op: conv2d, out: 4, kernel: 3, padding: 1}
        """),
    FireCase("identity_plus_depthwise_conv", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 6, 5, 5]}
        graph:
          - pre: relu
          - cpe: {op: conv2d, out: 6, kernel: 3, groups: 6}
          - res: {op: add, in: [cpe, pre]}
        """, """
        inputs: {x: [B, 6, 5, 5]}
        graph:
          - pre: relu
          - res: {op: conv2d, out: 6, kernel: 3, groups: 6, padding: 1}
        """),
    # -- fold_cdc -------------------------------------------------------------------------------
    FireCase("cdc", "fold_cdc", "fold_cdc", """
        inputs: {x: [B, 4, 8, 8]}
        graph:
          - cdc: {op: cdc_conv2d, out: 6, kernel: 3, stride: 2, theta: 0.6}
        """, """
        inputs: {x: [B, 4, 8, 8]}
        graph:
          - cdc: {op: conv2d, out: 6, kernel: 3, stride: 2}
        """),
    FireCase("cdc_grouped_dilated_nobias", "fold_cdc", "fold_cdc", """
        inputs: {x: [B, 4, 9, 9]}
        graph:
          - cdc: {op: cdc_conv2d, out: 4, kernel: [5, 3], dilation: 2, groups: 2, bias: false}
          - act: relu
        """, """
        inputs: {x: [B, 4, 9, 9]}
        graph:
          - cdc: {op: conv2d, out: 4, kernel: [5, 3], dilation: 2, groups: 2, bias: false}
          - act: relu
        """),
    # -- fold_layer_scale -----------------------------------------------------------------------
    FireCase("conv_layer_scale_bias", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 8, kernel: 3, bias: false}
          - ls: {op: layer_scale, init: 0.5, bias: true}
          - act: gelu
        """, """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 8, kernel: 3}
          - act: gelu
        """),
    FireCase("conv_layer_scale", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 1}
          - ls: {op: layer_scale, init: 0.1}
        """, """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 1}
        """),
    FireCase("linear_layer_scale_channels_last", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 6, bias: false}
          - ls: {op: layer_scale, channels_last: true, init: 0.3}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
        """, """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 6}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
        """),
    FireCase("linear_layer_scale_channels_last_bias", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 7, 4]}
        graph:
          - fc: {op: linear, out: 6}
          - ls: {op: layer_scale, channels_last: true, bias: true, init: 0.3}
        """, """
        inputs: {x: [B, 7, 4]}
        graph:
          - fc: {op: linear, out: 6}
        """),
    FireCase("rank2_linear_layer_scale", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 10]}
        graph:
          - fc: {op: linear, out: 6, bias: false}
          - ls: {op: layer_scale, init: 0.2}
        """, """
        inputs: {x: [B, 10]}
        graph:
          - fc: {op: linear, out: 6}
        """),
    # -- fold_grn_bias --------------------------------------------------------------------------
    FireCase("grn_conv1x1", "fold_scales", "fold_grn_bias", """
        inputs: {x: [B, 6, 5, 5]}
        graph:
          - grn: grn
          - pw: {op: conv2d, out: 8, kernel: 1, bias: false}
        """, """
        inputs: {x: [B, 6, 5, 5]}
        graph:
          - grn: {op: grn, bias: false}
          - pw: {op: conv2d, out: 8, kernel: 1}
        """),
    FireCase("grn_channels_last_linear", "fold_scales", "fold_grn_bias", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc1: {op: linear, out: 8}
          - act: gelu
          - grn: {op: grn, channels_last: true}
          - fc2: {op: linear, out: 4}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
        """, """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc1: {op: linear, out: 8}
          - act: gelu
          - grn: {op: grn, channels_last: true, bias: false}
          - fc2: {op: linear, out: 4}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
        """),
    # -- cleanups -------------------------------------------------------------------------------
    FireCase("train_only", "remove_train_only", "remove_train_only", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 3}
          - drop: {op: dropout, p: 0.3}
          - act: relu
          - dp: {op: drop_path, p: 0.2}
          - idn: identity
          - res: {op: add, in: [x, idn]}
        """, """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 3}
          - act: relu
          - res: {op: add, in: [x, act]}
        """),
    FireCase("dead_code", "dce", "dce", """
        inputs: {x: [B, 4, 5, 5]}
        blocks:
          blk:
            graph:
              - unused: {op: conv2d, out: 2, kernel: 1}
              - main: {op: conv2d, in: x, out: 4, kernel: 3}
              - act: relu
        graph:
          - dead: {op: conv2d, out: 3, kernel: 3}
          - dead2: {op: relu, in: dead}
          - b: {op: blk, in: x}
        """, """
        inputs: {x: [B, 4, 5, 5]}
        blocks:
          blk:
            graph:
              - main: {op: conv2d, out: 4, kernel: 3}
              - act: relu
        graph:
          - b: blk
        """),
    FireCase("cse", "cse", "cse", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - r1: relu
          - r2: {op: relu, in: x}
          - s: {op: add, in: [r1, r2]}
          - m1: {op: mul, in: [s, x]}
          - m2: {op: mul, in: [s, x]}
          - out: {op: sub, in: [m1, m2]}
        """, """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - r1: relu
          - s: {op: add, in: [r1, r1]}
          - m1: {op: mul, in: [s, x]}
          - out: {op: sub, in: [m1, m1]}
        """),
    FireCase("inline_blocks", "inline_blocks", "inline_blocks", """
        inputs: {x: [B, 4, 5, 5]}
        blocks:
          pw:
            params: {c: int}
            graph:
              - conv: {op: conv2d, out: "${c}", kernel: 1}
          wrap:
            params: {c: int}
            graph:
              - inner: {op: pw, c: "${c}"}
          two:
            graph:
              - a: relu
              - b: gelu
        graph:
          - p1: {op: pw, c: 8}
          - act: relu
          - p2: {op: wrap, c: 4}
          - t: two
        """, """
        inputs: {x: [B, 4, 5, 5]}
        blocks:
          two:
            graph:
              - a: relu
              - b: gelu
        graph:
          - p1: {op: conv2d, out: 8, kernel: 1}
          - act: relu
          - p2: {op: conv2d, out: 4, kernel: 1}
          - t: two
        """),
    FireCase("inline_empty_blocks", "inline_blocks", "inline_blocks", """
        inputs: {x: [B, 2, 4, 4]}
        blocks:
          maybe_act:
            params: {enabled: {type: bool, default: false}}
            graph:
              - act: {op: relu, when: "${enabled}"}
        graph:
          - c: {op: conv2d, out: 2, kernel: 3}
          - b: maybe_act
          - s: {op: maybe_act, repeat: 2}
          - r: {op: add, in: [s, c]}
        """, """
        inputs: {x: [B, 2, 4, 4]}
        graph:
          - c: {op: conv2d, out: 2, kernel: 3}
          - r: {op: add, in: [c, c]}
        """),
    # -- fold_affine_through_permute ------------------------------------------------------------
    FireCase("linear_permute_bn", "fold_through_permute", "fold_affine_through_permute", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 6, bias: false}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
          - bn: batchnorm
        """, """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 6}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
        """),
    FireCase("linear_permute_layer_scale", "fold_through_permute", "fold_affine_through_permute", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 4}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
          - ls: {op: layer_scale, init: 0.1, bias: true}
          - res: {op: add, in: [x, ls]}
        """, """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 4}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
          - res: {op: add, in: [x, nchw]}
        """),
    # -- merge_parallel_blocks ------------------------------------------------------------------
    FireCase("parallel_ffn", "merge_parallel_blocks", "merge_parallel_blocks", """
        inputs: {x: [B, 5, 8]}
        blocks:
          mlp:
            params: {hidden: int}
            graph:
              - fc1: {op: linear, out: "${hidden}"}
              - act: gelu
              - fc2: {op: linear, out: 8}
        graph:
          - norm: layernorm
          - ffn_a: {op: mlp, in: norm, hidden: 16}
          - ffn_b: {op: mlp, in: norm, hidden: 16}
          - xa: {op: add, in: [x, ffn_a]}
          - xb: {op: add, in: [xa, ffn_b]}
        """, """
        inputs: {x: [B, 5, 8]}
        blocks:
          mlp:
            graph:
              - fc1: {op: linear, out: 32}
              - act: gelu
              - fc2: {op: linear, out: 8}
        graph:
          - norm: layernorm
          - ffn_a: {op: mlp, in: norm}
          - xa: {op: add, in: [x, ffn_a]}
        """),
    FireCase("parallel_attention", "merge_parallel_blocks", "merge_parallel_blocks", """
        inputs: {x: [B, 6, 8]}
        blocks:
          mhsa:
            params: {heads: int, width: int}
            graph:
              - qkv: {op: linear, out: "${3 * width}"}
              - parts: {op: chunk, chunks: 3, dim: -1, names: [q, k, v]}
              - q: {op: reshape, in: parts.q, shape: "${[-1, heads, width // heads]}"}
              - qh: {op: transpose, dim0: 1, dim1: 2}
              - k: {op: reshape, in: parts.k, shape: "${[-1, heads, width // heads]}"}
              - kh: {op: transpose, dim0: 1, dim1: 2}
              - v: {op: reshape, in: parts.v, shape: "${[-1, heads, width // heads]}"}
              - vh: {op: transpose, dim0: 1, dim1: 2}
              - attn: {op: sdpa, in: [qh, kh, vh]}
              - tokens: {op: transpose, dim0: 1, dim1: 2}
              - merged: {op: reshape, shape: "${[-1, width]}"}
              - proj: {op: linear, out: 8}
        graph:
          - attn_a: {op: mhsa, heads: 2, width: 6}
          - attn_b: {op: mhsa, in: x, heads: 2, width: 6}
          - xa: {op: add, in: [x, attn_a]}
          - xb: {op: add, in: [xa, attn_b]}
        """, """
        inputs: {x: [B, 6, 8]}
        blocks:
          mhsa:
            graph:
              - qkv: {op: linear, out: 36}
              - parts: {op: chunk, chunks: 3, dim: -1, names: [q, k, v]}
              - q: {op: reshape, in: parts.q, shape: [-1, 4, 3]}
              - qh: {op: transpose, dim0: 1, dim1: 2}
              - k: {op: reshape, in: parts.k, shape: [-1, 4, 3]}
              - kh: {op: transpose, dim0: 1, dim1: 2}
              - v: {op: reshape, in: parts.v, shape: [-1, 4, 3]}
              - vh: {op: transpose, dim0: 1, dim1: 2}
              - attn: {op: sdpa, in: [qh, kh, vh]}
              - tokens: {op: transpose, dim0: 1, dim1: 2}
              - merged: {op: reshape, shape: [-1, 12]}
              - proj: {op: linear, out: 8}
        graph:
          - attn_a: mhsa
          - xa: {op: add, in: [x, attn_a]}
        """),
    # -- form_regions ---------------------------------------------------------------------------
    FireCase("residual_region", "form_regions", "form_regions", """
        inputs: {x: [B, 4, 6, 6]}
        blocks:
          conv_act:
            graph:
              - conv: {op: conv2d, out: 4, kernel: 3}
              - act: relu
          res:
            graph:
              - mix: conv_act
              - pw: {op: conv2d, out: 4, kernel: 1}
              - sum: {op: add, in: [x, pw]}
        graph:
          - stem: {op: conv2d, out: 4, kernel: 1}
          - layer1: res
        """, """
        inputs: {x: [B, 4, 6, 6]}
        blocks:
          res:
            graph:
              - mix_conv: {op: conv2d, out: 4, kernel: 3}
              - mix_act: relu
              - pw: {op: conv2d, out: 4, kernel: 1}
              - sum: {op: add, in: [x, pw]}
        graph:
          - stem: {op: conv2d, out: 4, kernel: 1}
          - layer1: res
        """),
    # -- the whole deploy pipeline on train-form reparameterizable blocks ------------------------
    FireCase("deploy_repvgg_train_form", "deploy", "merge_parallel_convs", """
        inputs: {x: [B, 4, 8, 8]}
        blocks:
          conv_bn:
            params: {c: int, k: int, s: {type: int, default: 1}}
            graph:
              - conv: {op: conv2d, out: "${c}", kernel: "${k}", stride: "${s}", bias: false}
              - bn: batchnorm
          down:
            params: {c: int}
            graph:
              - dense: {op: conv_bn, in: x, c: "${c}", k: 3, s: 2}
              - pw: {op: conv_bn, in: x, c: "${c}", k: 1, s: 2}
              - sum: {op: add, in: [dense, pw]}
              - act: relu
          repvgg:
            params: {c: int}
            graph:
              - dense: {op: conv_bn, in: x, c: "${c}", k: 3}
              - pw: {op: conv_bn, in: x, c: "${c}", k: 1}
              - idbn: {op: batchnorm, in: x}
              - sum: {op: add, in: [dense, pw]}
              - sum2: {op: add, in: [sum, idbn]}
              - act: relu
        graph:
          - down: {op: down, c: 8}
          - stage: {op: repvgg, c: 8, repeat: 2}
          - drop: {op: dropout, p: 0.1}
          - head: {op: conv2d, out: 3, kernel: 1}
          - ls: {op: layer_scale, init: 0.5, bias: true}
        """, """
        inputs: {x: [B, 4, 8, 8]}
        blocks:
          down:
            params: {c: int}
            graph:
              - sum: {op: conv2d, out: "${c}", kernel: 3, stride: 2, padding: 1}
              - act: relu
          repvgg:
            params: {c: int}
            graph:
              - sum2: {op: conv2d, out: "${c}", kernel: 3, padding: 1}
              - act: relu
        graph:
          - down: {op: down, c: 8}
          - stage: {op: repvgg, c: 8, repeat: 2}
          - head: {op: conv2d, out: 3, kernel: 1}
        """),
]


NO_FIRE: list[NoFireCase] = [
    NoFireCase("conv_output_used_elsewhere", "fold_bn", "fold_bn_into_prev", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - conv: {op: conv2d, out: 4, kernel: 3, bias: false}
          - bn: batchnorm
          - s: {op: add, in: [conv, bn]}
        """, "'conv' is also used outside the match"),
    NoFireCase("bn_into_zero_padded_conv", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - bn: batchnorm
          - conv: {op: conv2d, out: 4, kernel: 3, padding: 1}
        """, "'conv' zero-pads its input"),
    NoFireCase("bn_into_default_padded_conv", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - bn: batchnorm
          - conv: {op: conv2d, out: 4, kernel: [1, 3], groups: 4}
        """, "'conv' zero-pads its input (padding (0, 1))"),
    NoFireCase("bn_into_rank3_linear", "fold_bn", "fold_bn_into_next", """
        inputs: {x: [B, 4, 6]}
        graph:
          - bn: batchnorm
          - fc: {op: linear, out: 5}
        """, "its user 'fc' is a linear, not a conv or rank-2 linear"),
    NoFireCase("branches_mismatched_strides", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 8, 8]}
        graph:
          - a: {op: conv2d, in: x, out: 4, kernel: 1, stride: 2}
          - b: {op: conv2d, in: x, out: 4, kernel: 3, dilation: 2, padding: 0}
          - s: {op: add, in: [a, b]}
        """, "has stride=(1, 1) but 'a' has (2, 2)"),
    NoFireCase("branches_not_centred", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 9, 9]}
        graph:
          - a: {op: conv2d, in: x, out: 4, kernel: 3, padding: 0, stride: 3}
          - b: {op: conv2d, in: x, out: 4, kernel: 1, stride: 3}
          - s: {op: add, in: [a, b]}
        """, "branch 'b' is not centred like the others"),
    NoFireCase("identity_with_stride2_conv", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 1, 8]}
        graph:
          - c: {op: conv2d, out: 4, kernel: 3, stride: [2, 1]}
          - s: {op: add, in: [x, c]}
        """, "identity branch 'x' needs stride 1"),
    NoFireCase("branch_used_elsewhere", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - a: {op: conv2d, in: x, out: 4, kernel: 3}
          - b: {op: conv2d, in: x, out: 4, kernel: 1}
          - s: {op: add, in: [a, b]}
          - t: {op: mul, in: [s, a]}
        """, "branch 'a' is also used outside the sum"),
    NoFireCase("merge_would_add_macs", "merge_branches", "merge_parallel_convs", """
        inputs: {x: [B, 4, 6, 6]}
        graph:
          - hor: {op: conv2d, in: x, out: 4, kernel: [1, 3]}
          - ver: {op: conv2d, in: x, out: 4, kernel: [3, 1]}
          - s: {op: add, in: [hor, ver]}
        """, "would cost more MACs than the branches (9 taps per output vs 6)"),
    NoFireCase("layer_scale_wrong_axis", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 4, 8, 8]}
        graph:
          - conv: {op: conv2d, out: 8, kernel: 3}
          - ls: {op: layer_scale, channels_last: true, init: 0.5}
        """, "layer scale over the last axis does not scale the output channels of 'conv'"),
    NoFireCase("layer_scale_wrong_axis_linear", "fold_scales", "fold_layer_scale", """
        inputs: {x: [B, 6, 6]}
        graph:
          - fc: {op: linear, out: 6}
          - ls: {op: layer_scale, init: 0.5}
        """, "layer scale over axis 1 does not scale the output channels of 'fc'"),
    NoFireCase("grn_into_padded_conv", "fold_scales", "fold_grn_bias", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - grn: grn
          - pw: {op: conv2d, out: 4, kernel: 1, padding: 1}
        """, "'pw' is not a channels-first unpadded 1×1 conv"),
    NoFireCase("grn_channels_first_into_linear", "fold_scales", "fold_grn_bias", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - grn: grn
          - fc: {op: linear, out: 3}
        """, "'fc' maps the last axis but the GRN normalizes axis 1"),
    NoFireCase("permute_not_nhwc_to_nchw", "fold_through_permute", "fold_affine_through_permute", """
        inputs: {x: [B, 5, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 5}
          - p: {op: permute, dims: [0, 3, 2, 1]}
          - bn: batchnorm
        """, "'p' is not the NHWC → NCHW permute (0, 3, 1, 2)"),
    NoFireCase("permuted_linear_used_elsewhere", "fold_through_permute", "fold_affine_through_permute", """
        inputs: {x: [B, 4, 5, 5]}
        graph:
          - nhwc: {op: permute, dims: [0, 2, 3, 1]}
          - fc: {op: linear, out: 4}
          - nchw: {op: permute, dims: [0, 3, 1, 2]}
          - bn: batchnorm
          - side: {op: permute, in: fc, dims: [0, 3, 1, 2]}
          - s: {op: add, in: [bn, side]}
        """, "'fc' or 'nchw' is also used outside the match"),
    NoFireCase("parallel_blocks_differ", "merge_parallel_blocks", "merge_parallel_blocks", """
        inputs: {x: [B, 5, 8]}
        blocks:
          mlp:
            params: {hidden: int}
            graph:
              - fc1: {op: linear, out: "${hidden}"}
              - act: gelu
              - fc2: {op: linear, out: 8}
        graph:
          - ffn_a: {op: mlp, hidden: 16}
          - ffn_b: {op: mlp, in: x, hidden: 8}
          - xa: {op: add, in: [x, ffn_a]}
          - xb: {op: add, in: [xa, ffn_b]}
        """, "'ffn_a' and 'ffn_b' differ in structure or attributes"),
    NoFireCase("parallel_blocks_not_summed", "merge_parallel_blocks", "merge_parallel_blocks", """
        inputs: {x: [B, 5, 8]}
        blocks:
          mlp:
            graph:
              - fc1: {op: linear, out: 16}
              - act: gelu
              - fc2: {op: linear, out: 8}
        graph:
          - ffn_a: mlp
          - ffn_b: {op: mlp, in: x}
          - cat: {op: concat, in: [ffn_a, ffn_b], dim: -1}
        """, "'ffn_a' or 'ffn_b' is not added into a residual sum"),
]
