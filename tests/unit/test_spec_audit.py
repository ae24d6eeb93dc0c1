"""Norm constants of the bundled specs, audited against the code each reproduces.

Each spec names the implementation it follows (timm's VisionTransformer, ConvNeXt, HorNet,
UniRepLKNet, InceptionNeXt's MetaNeXt; torchvision/timm ResNet, RegNet, EfficientNet, RepVGG, ...).
Those use ``LayerNorm(eps=1e-6)`` for every LayerNorm (channels-first or last) and GRN (Swin: PyTorch's 1e-5), and PyTorch's
BatchNorm/GroupNorm defaults (eps 1e-5, momentum 0.1). A wrong eps changes outputs by ~1e-6
relative: invisible in a smoke test, visible to anyone comparing logits with the original.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archc.compiler import CompileOptions, build_graph
from archc.spec.document import load_spec_doc

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
EXPECTED = {
    "layernorm": {"eps": 1e-6},
    "layernorm2d": {"eps": 1e-6},
    "grn": {"eps": 1e-6},
    "batchnorm": {"eps": 1e-5, "momentum": 0.1},
    "groupnorm": {"eps": 1e-5},
}
#: specs whose reproduced code differs: timm's SwinTransformer builds its LayerNorms with PyTorch's default eps
OVERRIDES = {"swin": {"layernorm": {"eps": 1e-5}}}
#: single nodes (by path, digits as '#') whose reproduced code differs: TransNeXt's patch embedding and the
#: norm of its pooled keys are plain nn.LayerNorm(dim) (eps 1e-5) where its blocks pass eps 1e-6
NODE_OVERRIDES = {"transnext": {"stages.#.patch_embed.norm": {"eps": 1e-5}, "stages.#.blocks.#.attn.norm": {"eps": 1e-5}}}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_norm_constants_match_the_reproduced_code(path: Path) -> None:
    doc = load_spec_doc(path)
    wrong = []
    for variant in list(doc.variants) or [None]:
        _, g = build_graph(path, CompileOptions(variant=variant))
        for where, node in g.walk():
            expected = {**EXPECTED, **OVERRIDES.get(path.stem, {})}.get(node.op, {})
            expected = {**expected, **NODE_OVERRIDES.get(path.stem, {}).get(re.sub(r"\d+", "#", str(where)), {})}
            for attr, want in expected.items():
                if node.attrs.get(attr) != want:
                    wrong.append(f"{variant}: {node.id} ({node.op}) {attr}={node.attrs.get(attr)}, expected {want}")
    assert not wrong, "\n".join(sorted(set(wrong)))
