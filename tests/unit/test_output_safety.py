"""Outputs never replace inputs, stay in the working folder, respect the umask and clean up after kills."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archc._fs import remove_stale_temps, safe_stem
from archc.cli import main
from archc.compiler import compile_spec, write_atomic
from archc.passes.equivalence import module_from_graph

SPEC = "archc: 1\nname: NAME\ninputs:\n  x: [B, 4, 8, 8]\ngraph:\n  - conv: {op: conv2d, out: 4, kernel: 3}\n  - bn: batchnorm\n"


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "n.yaml").write_text(SPEC.replace("NAME", "n"))
    return tmp_path


def _checkpoint(path: Path, dtype: torch.dtype = torch.float32) -> bytes:
    model = module_from_graph(compile_spec(path.parent / "n.yaml").graph).to(dtype)
    torch.save(model.state_dict(), path)
    return path.read_bytes()


def test_output_equal_to_the_checkpoint_is_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _checkpoint(work / "model.pth")
    assert main(["compile", "n.yaml", "--pipeline", "deploy", "--weights", "model.pth", "-o", "model.py"]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert (work / "model.pth").read_bytes() == before and not (work / "model.py").exists()


@pytest.mark.parametrize("out", ["n.yaml", "out.pth", "model.pt"])
def test_wrong_suffix_is_refused_with_the_right_one(work: Path, capsys: pytest.CaptureFixture[str], out: str) -> None:
    spec_before = (work / "n.yaml").read_text()
    assert main(["compile", "n.yaml", "-o", out]) == 1
    err = capsys.readouterr().err
    assert "does not end in .py" in err and f"-o {Path(out).stem}.py" in err
    assert (work / "n.yaml").read_text() == spec_before


def test_imported_spec_is_an_input(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "lib.yaml").write_text("archc: 1\nname: lib\nblocks:\n  b:\n    graph: [relu]\n")
    (work / "m.yaml").write_text("archc: 1\nname: m\nimports: [lib.yaml]\ninputs:\n  x: [B, 4, 8, 8]\ngraph:\n  - b\n")
    before = (work / "lib.yaml").read_text()
    assert main(["compile", "m.yaml", "--target", "pytorch", "-o", "lib.py"]) == 0  # a different file: fine
    assert main(["compile", "m.yaml", "--target", "torchscript", "-o", "lib.yaml"]) == 1
    assert (work / "lib.yaml").read_text() == before


def test_default_output_name_stays_in_the_working_folder(work: Path) -> None:
    (work / "sub").mkdir()
    (work / "sub" / "bad.yaml").write_text(SPEC.replace("NAME", '"../../../escape"'))
    os.chdir(work / "sub")
    assert main(["compile", "bad.yaml"]) == 0
    assert (work / "sub" / "escape.py").exists()
    assert not any(p.name == "escape.py" for p in work.parent.rglob("escape.py") if p.parent != work / "sub")
    assert safe_stem("../../../x") == "x" and safe_stem(".hidden") == "hidden" and safe_stem("a/b\\c") == "c"


def test_weights_keep_the_checkpoint_dtype(work: Path) -> None:
    _checkpoint(work / "w64.pth", torch.float64)
    assert main(["compile", "n.yaml", "--pipeline", "deploy", "--weights", "w64.pth", "-o", "d.py"]) == 0
    assert {v.dtype for v in torch.load(work / "d.pth").values()} == {torch.float64}
    _checkpoint(work / "w32.pth", torch.float32)
    assert main(["compile", "n.yaml", "--pipeline", "deploy", "--weights", "w32.pth", "-o", "e.py"]) == 0
    assert {v.dtype for v in torch.load(work / "e.pth").values()} == {torch.float32}


def test_outputs_respect_the_umask(work: Path) -> None:
    old = os.umask(0o027)
    try:
        assert main(["compile", "n.yaml", "-o", "u.py"]) == 0
        write_atomic(work / "w.txt", "x")
    finally:
        os.umask(old)
    for name in ("u.py", "w.txt"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o640, name


def test_stale_temp_of_a_killed_writer_is_removed(work: Path) -> None:
    # a writer that dies between creating its temporary file and renaming it
    code = ("import os, sys; from pathlib import Path; from archc._fs import temp_beside; "
            "fd, tmp = temp_beside(Path('out.py')); os.write(fd, b'x' * 1000); os._exit(9)")
    subprocess.run([sys.executable, "-c", code], cwd=work, check=False)
    stale = [p for p in work.iterdir() if p.name.startswith(".out.py.") and p.name.endswith(".tmp")]
    assert len(stale) == 1
    live = work / f".out.py.{os.getpid()}.keep.tmp"  # our own (live) process's temporary is kept
    live.write_text("")
    assert main(["compile", "n.yaml", "-o", "out.py"]) == 0
    assert not stale[0].exists() and live.exists()
    assert remove_stale_temps(work / "out.py") == []
