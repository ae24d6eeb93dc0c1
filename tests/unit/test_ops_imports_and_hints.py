"""The bundled library from anywhere (archc: imports, confined) and the hints for other frameworks' names."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest
import tomllib

from archc.compiler import CompileOptions, compile_spec
from archc.diagnostics import SpecError
from archc.ops import REGISTRY
from archc.spec import bundled as bundled_mod
from archc.spec import load_spec
from archc.spec.suggestions import ATTR_ALIASES, OP_ALIASES, attr_hint, op_hint

SPEC = """\
archc: 1
imports: [{imp}]
inputs: {{x: [B, 3, 16, 16]}}
graph:
  - a: {{op: conv_bn_act, cout: 8, k: 3}}
  - b: {{op: {op}{attrs}}}
"""


def _write(folder: Path, imp: str = "archc:lib/common.yaml", op: str = "resize", attrs: str = ", scale: 2.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "model.yaml"
    p.write_text(SPEC.format(imp=imp, op=op, attrs=attrs), encoding="utf-8")
    return p


def _error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


def test_bundled_library_imports_from_outside_any_project(tmp_path: Path) -> None:
    spec = _write(tmp_path / "elsewhere")
    assert not any((d / "pyproject.toml").exists() or (d / ".git").exists() for d in (spec.parent, *spec.parent.parents))
    res = compile_spec(spec, CompileOptions())
    assert "class ConvBnAct" in res.source and res.cost.params == 3 * 8 * 9 + 16
    # the same file by a relative path is outside this spec's tree, and refused
    rel = Path(bundled_mod.bundled_root() / "lib" / "common.yaml")
    err = _error(_write(tmp_path / "rel", imp=str(Path("..") / Path(*[".."] * len(tmp_path.parts)) / rel.relative_to("/"))))
    assert "outside the project tree" in err.message and "archc:lib/" in (err.hint or "")


@pytest.mark.parametrize("imp,match", [
    ("archc:../../etc/x.yaml", "inside the bundled library"),
    ("archc:lib/../../pyproject.yaml", "inside the bundled library"),
    ("archc:/etc/x.yaml", "inside the bundled library"),
    ("archc:lib/nothing.yaml", "has no file 'lib/nothing.yaml'"),
])
def test_bundled_imports_stay_inside_the_library(tmp_path: Path, imp: str, match: str) -> None:
    err = _error(_write(tmp_path, imp=imp))
    assert match in err.message and err.loc is not None and err.loc.line == 2
    if "nothing" in imp:
        assert "archc:lib/common.yaml" in (err.hint or "")


def test_bundled_files_import_relatively_inside_the_library_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "bundle" / "lib"
    lib.mkdir(parents=True)
    (lib / "base.yaml").write_text(
        "archc: 1\nblocks:\n  twice:\n    graph: [relu, relu]\n  conv_bn_act:\n    params: {cout: int, k: int}\n"
        "    graph:\n      - {op: conv2d, out: '${cout}', kernel: '${k}'}\n", encoding="utf-8")
    (lib / "uses.yaml").write_text("archc: 1\nimports: [base.yaml]\nblocks: {}\n", encoding="utf-8")
    (tmp_path / "secret.yaml").write_text("archc: 1\nblocks: {}\n", encoding="utf-8")
    (lib / "escapes.yaml").write_text("archc: 1\nimports: [../../secret.yaml]\nblocks: {}\n", encoding="utf-8")
    monkeypatch.setattr(bundled_mod, "bundled_root", lambda: tmp_path / "bundle")
    g = load_spec(_write(tmp_path / "user", imp="archc:lib/uses.yaml", op="twice", attrs=""), params={})
    assert g is not None
    err = _error(_write(tmp_path / "user2", imp="archc:lib/escapes.yaml", op="relu", attrs=""))
    assert "outside the project tree" in err.message and "escapes.yaml" in err.loc.path


def test_every_folder_of_code_or_data_ships_in_the_wheel() -> None:
    """What setuptools installs, read from pyproject.toml: each folder under a package root holding Python
    code is a listed package, and each data file (the bundled spec library, templates, pass cases) matches a
    package-data pattern of its own package or a recursive pattern of a listed ancestor (a data folder that
    is not a listed package ships through an ancestor's pattern, but setuptools warns on every build)."""
    root = Path(__file__).resolve().parents[2]
    cfg = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages, data = set(cfg["packages"]), cfg["package-data"]

    def shipped(name: str, base: Path, f: Path) -> bool:
        rel = f.relative_to(base).parts
        for i in range(len(rel)):  # the file's own package (i = len - 1) and each ancestor package
            pkg = ".".join((name, *rel[:i]))
            own = i == len(rel) - 1
            if pkg in packages and any(fnmatch("/".join(rel[i:]), pat) for pat in data.get(pkg, [])
                                       if own or "**" in pat):
                return True
        return False

    missing = []
    for name, folder in cfg["package-dir"].items():
        base = root / folder
        for f in base.rglob("*"):
            if "__pycache__" in f.parts or not f.is_file():
                continue
            if f.suffix == ".py":
                if ".".join((name, *f.parent.relative_to(base).parts)) not in packages:
                    missing.append(f)
            elif f.suffix in {".yaml", ".yml", ".j2"} and not shipped(name, base, f):
                missing.append(f)
    assert not missing, [str(m.relative_to(root)) for m in missing]


@pytest.mark.parametrize("op,attrs,match,hint", [
    ("upsample", ", scale: 2.0", "unknown op 'upsample'", "did you mean 'resize'?"),
    ("nn.Upsample", ", scale: 2.0", "unknown op 'nn.Upsample'", "did you mean 'resize'?"),
    ("interpolate", ", scale: 2.0", "unknown op 'interpolate'", "did you mean 'resize'?"),
    ("Conv2d", ", out: 4", "unknown op 'Conv2d'", "did you mean 'conv2d'?"),
    ("Linear", ", out: 4", "unknown op 'Linear'", "did you mean 'linear'?"),
    ("ConvTranspose2d", ", out: 4, kernel: 2", "unknown op 'ConvTranspose2d'", "did you mean 'conv_transpose2d'?"),
    ("deconv", ", out: 4, kernel: 2", "unknown op 'deconv'", "did you mean 'conv_transpose2d'?"),
    ("resize", ", scale_factor: 2.0", "unknown attribute 'scale_factor'", "did you mean 'scale'?"),
    ("conv2d", ", out: 4, kernel_size: 3", "unknown attribute 'kernel_size'", "did you mean 'kernel'?"),
    ("conv2d", ", out_channels: 4", "unknown attribute 'out_channels'", "did you mean 'out'?"),
    ("conv2d", ", out: 4, in_channels: 8", "unknown attribute 'in_channels'", "read from the input's shape"),
])
def test_other_frameworks_names_get_archcs(tmp_path: Path, op: str, attrs: str, match: str, hint: str) -> None:
    err = _error(_write(tmp_path, op=op, attrs=attrs))
    assert match in err.message and hint in (err.hint or ""), (err.message, err.hint)
    assert err.loc is not None and err.loc.line == 6


def test_conv_transpose2d_exists_and_resize_takes_a_reference(tmp_path: Path) -> None:
    spec = _write(tmp_path, op="conv_transpose2d", attrs=", out: 4, kernel: 2, stride: 2")
    assert load_spec(spec).output_types[0].shape == ("B", 4, 32, 32)
    spec.write_text(SPEC.format(imp="archc:lib/common.yaml", op="resize", attrs=", in: [a, x], mode: bilinear"),
                    encoding="utf-8")
    assert load_spec(spec).output_types[0].shape == ("B", 8, 16, 16)
    spec.write_text(SPEC.format(imp="archc:lib/common.yaml", op="resize", attrs=", in: [a, x, x]"), encoding="utf-8")
    err = _error(spec)
    assert "op 'resize' takes 1..2 inputs, got 3" in err.message and "size" in (err.hint or "")


def test_alias_tables_point_at_registered_ops_and_attributes() -> None:
    assert all(target in REGISTRY for target in OP_ALIASES.values()), sorted(set(OP_ALIASES.values()) - set(REGISTRY))
    attrs = {a.name for op in REGISTRY.values() for a in op.attrs}
    assert all(target in attrs for target in ATTR_ALIASES.values()), sorted(set(ATTR_ALIASES.values()) - attrs)
    assert op_hint("nn.ConvTranspose2d", REGISTRY) == "did you mean 'conv_transpose2d'? ('nn.ConvTranspose2d' is called 'conv_transpose2d' here)"
    assert op_hint("relu", REGISTRY) == "did you mean 'relu'?"  # case and prefix only
    assert attr_hint("scale_factor", "conv2d", ["out", "kernel"]) is None  # an alias the op does not have is no hint
