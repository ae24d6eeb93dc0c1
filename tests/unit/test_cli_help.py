"""Help carries examples that parse and name existing files; a mistyped spec/space/data path gets 'did you mean'."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from archc._cli_help import EXAMPLES, MAIN_EPILOG, suggest_path
from archc.cli import _COMMANDS, _parser, main

ROOT = Path(__file__).resolve().parents[2]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_main_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["--help"], capsys)
    assert "examples:\n  archc validate specs/transxnet.yaml" in text
    assert "viz" in text and "-q, --quiet" in text


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_command_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help([command, "--help"], capsys)
    assert "\nexamples:\n" in text
    rows = EXAMPLES[command]
    assert rows and all(cmd in text for cmd, _ in rows)  # printed verbatim (RawDescriptionHelpFormatter)
    assert any(f"archc {command}" in cmd for cmd, _ in rows)


def _example_lines() -> list[str]:
    lines = [cmd for rows in EXAMPLES.values() for cmd, _ in rows]
    lines += [ln.strip().split("  ")[0] for ln in MAIN_EPILOG.splitlines() if ln.strip().startswith("archc ")]
    return [ln for ln in lines if "COMMAND" not in ln]


@pytest.mark.parametrize("line", _example_lines())
def test_examples_parse_and_name_existing_files(line: str) -> None:
    words = shlex.split(line)
    words = words[words.index("archc") + 1:] if "archc" in words else words
    args = _parser().parse_args(words)  # raises SystemExit on an option that does not exist
    assert args.command in _COMMANDS
    for word in words:
        if word.startswith(("specs/", "search_spaces/")):
            assert (ROOT / word).exists(), word


@pytest.mark.parametrize("argv", [
    ["validate", "specs/transxnext.yaml"],
    ["show", "specs/transxnext.yaml"],
    ["compile", "specs/transxnext.yaml"],
    ["viz", "specs/transxnext.yaml", "-o", "x.dot"],
    ["explain", "specs/transxnext.yaml", "--pass", "fold_bn"],
    ["scale", "specs/transxnext.yaml", "--flops", "2"],
    ["bench", "specs/transxnext.yaml"],
    ["train", "specs/transxnext.yaml", "--epochs", "1", "--out", "runs/x"],
])
def test_mistyped_spec_gets_a_suggestion(argv: list[str], capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["specs/transxnext.yaml: error: file not found", "  help: did you mean 'specs/transxnet.yaml'?"]
    assert not Path(ROOT / "x.dot").exists() and not Path(ROOT / "runs" / "x").exists()


def test_mistyped_space_data_and_folder(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["search", "search_space/cdc.yml"]) == 1  # both the folder and the file name are wrong
    assert "did you mean 'search_spaces/cdc.yaml'?" in capsys.readouterr().err
    assert main(["train", "specs/resnet.yaml", "--data", "digts", "--epochs", "1", "--out", "runs/x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("digts: error: --data: data source does not exist") and "did you mean 'digits'?" in err
    assert main(["compile", "specs/resnet.yaml", "--weights", "nothing_like_it.pth"]) == 1
    err = capsys.readouterr().err
    assert "nothing_like_it.pth: error: --weights: checkpoint does not exist" in err and "help: check the path" in err


def test_suggest_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "convnext.yaml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert suggest_path("specs/convnxt.yaml") == "specs/convnext.yaml"
    assert suggest_path("spec/convnext.yaml") == "specs/convnext.yaml"
    assert suggest_path(str(tmp_path / "specs" / "conv_next.yaml")) == str(tmp_path / "specs" / "convnext.yaml")
    assert suggest_path("specs/resnet.yaml") is None  # nothing close: no guess
    assert suggest_path("specs/convnext.yaml") is None  # it exists: nothing to suggest
