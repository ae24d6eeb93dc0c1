"""Default run folders come from the space's name made a plain folder name, never a path elsewhere."""

from __future__ import annotations

from pathlib import Path

from archc.search.space import load_space
from tests.search.conftest import BASE_SPACE, write_space


def test_space_name_cannot_leave_runs(tmp_path: Path) -> None:
    text = BASE_SPACE.replace("name: tiny_space", "name: ../../../escaped")
    space = load_space(write_space(tmp_path, text))
    assert space.run_folder() == Path("runs") / "escaped"
    assert space.run_folder("_spos") == Path("runs") / "escaped_spos"


def test_hidden_and_odd_names_are_plain(tmp_path: Path) -> None:
    text = BASE_SPACE.replace("name: tiny_space", "name: .hidden space")
    space = load_space(write_space(tmp_path, text))
    assert space.run_folder() == Path("runs") / "hidden_space"


def test_study_out_is_the_users_choice(tmp_path: Path) -> None:
    text = BASE_SPACE.replace("  trials: 3\n", "  trials: 3\n  out: my_runs/a\n")
    space = load_space(write_space(tmp_path, text))
    assert space.run_folder() == Path("my_runs/a")
    assert space.run_folder("_pcdarts") == Path("runs") / "tiny_space_pcdarts"
