"""Artifacts are byte-identical across runs; machine-specific choices live beside them; docs say what the code is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archc.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_fused_source_is_identical_and_the_fusion_record_is_a_separate_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = str(ROOT / "tests/fixtures/mini.yaml")
    for name in ("a.py", "b.py"):
        assert main(["compile", spec, "--pipeline", "fused", "-o", name]) == 0
    a, b = (tmp_path / "a.py").read_bytes(), (tmp_path / "b.py").read_bytes()
    assert a == b
    assert b"PLAIN_CONVS" not in a and b".fusion.json" in a
    record = json.loads((tmp_path / "a.fusion.json").read_text())
    assert isinstance(record["unfused"], list) and record["unfused"] == sorted(record["unfused"])


def test_deploy_docstrings_do_not_describe_the_training_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(ROOT / "tests/fixtures/mini.yaml"), "--pipeline", "deploy", "-o", "d.py"]) == 0
    src = (tmp_path / "d.py").read_text()
    assert "Block 'conv_bn_act' in its deploy form (rewritten by fold_bn" in src


def test_values_are_named_after_what_computed_them() -> None:
    golden = (ROOT / "tests/golden/transxnet_t.py.txt").read_text()
    assert "relpos = self.osra(" not in golden and "osra = self.osra(halves_globl, relpos)" in golden
    assert "mixed = torch.cat([idconv, osra], 1)" in golden
