"""Stage timings on stderr (archc.progress): lines as stages finish, a live line only on a terminal, -q silences."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.compiler import CompileOptions
from archc.progress import LineBar, Progress, progress_bar

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "fixtures" / "mini.yaml"


class Clock:
    """A fake clock: each stage below takes the seconds it is given."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(p: Progress, clock: Clock, stages: list[tuple[str, float]]) -> None:
    for name, seconds in stages:
        p.begin(name)
        clock.now += seconds
    p.finish()


def test_lines_as_stages_finish_without_carriage_returns() -> None:
    clock, out = Clock(), io.StringIO()
    p = Progress("compile", stream=out, clock=clock, tty=False)
    p.begin("expand")
    clock.now += 0.1
    p.begin("passes")
    assert out.getvalue() == ""  # 0.1 s in: a quick command prints nothing
    clock.now += 0.4
    p.begin("lower")
    assert out.getvalue() == ""
    clock.now += 2.3
    p.begin("write")  # 2.8 s in: the stages so far, while the command still runs
    assert out.getvalue() == "[archc] compile: expand 0.1s · passes 0.4s · lower 2.3s\n"
    clock.now += 0.2
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines[-1] == "[archc] compile: expand 0.1s · passes 0.4s · lower 2.3s · write 0.2s · total 3.0s"
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert p.stages == [("expand", 0.1), ("passes", 0.4), ("lower", pytest.approx(2.3)), ("write", pytest.approx(0.2))]


def test_quick_command_prints_nothing() -> None:
    clock, out = Clock(), io.StringIO()
    _run(Progress("validate", stream=out, clock=clock, tty=False), clock, [("load", 0.2), ("expand", 0.3)])
    assert out.getvalue() == ""


def test_terminal_line_is_redrawn_in_place_and_erased_on_failure() -> None:
    clock, out = Clock(), io.StringIO()
    _run(Progress("compile", stream=out, clock=clock, tty=True), clock, [("load", 0.5), ("lower", 2.0)])
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("[archc] compile: load 0.5s · lower 2.0s · total 2.5s\n")
    assert "\r\x1b[K[archc] compile: load 0.5s · lower …" in text  # the running stage is shown

    out = io.StringIO()
    p = Progress("compile", stream=out, clock=clock, tty=True)
    with pytest.raises(ValueError), p.stage("expand"):
        raise ValueError("bad spec")
    assert out.getvalue().endswith("\r\x1b[K") and "\n" not in out.getvalue()  # the error starts on a clean line


def test_disabled_progress_prints_nothing() -> None:
    clock, out = Clock(), io.StringIO()
    _run(Progress("compile", stream=out, clock=clock, tty=False, enabled=False), clock, [("lower", 5.0)])
    assert out.getvalue() == ""


def test_a_real_compile_reports_its_stages(tmp_path: Path) -> None:
    from archc.targets import compile_target

    torch.set_num_threads(1)
    out = io.StringIO()
    p = Progress("compile", stream=out, tty=False, quiet_below=0)
    compile_target(MINI, CompileOptions(target="torchscript", pipeline="deploy", progress=p), tmp_path / "m.pt")
    p.finish()
    names = [name for name, _ in p.stages]
    assert names == ["load", "expand", "passes", "codegen", "tune", "lower", "verify"]
    lines = out.getvalue().splitlines()
    assert len(lines) == len(names) + 1  # one line per finished stage, then the whole with the total
    assert lines[0].startswith("[archc] compile: load ") and " · verify " in lines[-2]
    assert lines[-1].startswith(lines[-2] + " · total ")


def test_cli_build_prints_stage_lines_and_quiet_silences(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setattr(Progress, "quiet_below", 0.0)  # the fixture compiles in well under a second
    assert main(["compile", str(MINI), "--target", "torchscript", "-o", str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    assert "[archc] compile: load " in err and " · lower " in err and " · write " in err and "total" in err
    assert "\r" not in err
    assert main(["compile", str(MINI), "--target", "torchscript", "-q", "-o", str(tmp_path / "m.pt")]) == 0
    assert "[archc]" not in capsys.readouterr().err
    assert main(["-q", "compile", str(MINI), "-o", str(tmp_path / "m.py")]) == 0
    assert "[archc]" not in capsys.readouterr().err


def test_log_bar_prints_periodic_lines() -> None:
    out, clock = io.StringIO(), Clock()
    bar = LineBar(10, 0, "search cdc", "trial", out, interval=30.0, clock=clock)
    for i in range(1, 11):
        clock.now += 5.0
        bar.n = i
        bar.set_postfix_str(f"best acc {i / 10:.1f}")
        bar.refresh()
    bar.close()
    lines = out.getvalue().splitlines()
    # the first change at once, then at most one line per 30 s, and the final state at close
    assert lines[0] == "[archc] search cdc: 1/10 trials (5s) best acc 0.1"
    assert lines[1].startswith("[archc] search cdc: 7/10 trials (35s)")
    assert lines[-1] == "[archc] search cdc: 10/10 trials (50s) best acc 1.0"
    assert len(lines) == 3 and "\r" not in out.getvalue()


def test_progress_bar_is_plain_lines_off_a_terminal() -> None:
    assert isinstance(progress_bar(5, 0, "search x", "trial", io.StringIO()), LineBar)


def test_live_line_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a, **k: os.terminal_size((40, 24)))
    clock, out = Clock(), io.StringIO()
    _run(Progress("compile", stream=out, clock=clock, tty=True),
         clock, [("load", 0.5), ("expand", 0.5), ("passes", 0.5), ("lower", 0.5)])
    *live, final = out.getvalue().split("\r\x1b[K")[1:]
    assert all(len(x) <= 39 for x in live) and live[-1].startswith("[archc] compile: …")
    assert final == "[archc] compile: load 0.5s · expand 0.5s · passes 0.5s · lower 0.5s · total 2.0s\n"


def test_search_progress_in_a_log_has_no_carriage_returns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.search.conftest import write_space

    torch.set_num_threads(1)
    space = write_space(tmp_path)
    assert main(["search", str(space), "--trials", "2", "--out", str(tmp_path / "run"), "--seed", "1", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # captured stderr is no terminal: plain lines, no tqdm redraws
    assert "[archc] search tiny_space: 2/2 trials" in err
