"""archc viz: pictures of a graph (every node drawn, blocks as clusters by depth) and of a pipeline diff."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # under CI the viz extra is installed: a missing package must fail, not skip
    pytest.importorskip("graphviz")

from archc.cli import main  # noqa: E402
from archc.compiler import CompileOptions, build_graph  # noqa: E402
from archc.cost.model import graph_cost  # noqa: E402
from archc.passes.pipeline import PIPELINES, run_pipeline  # noqa: E402
from archc.spec.document import load_spec_doc  # noqa: E402
from archc.viz import viz_spec  # noqa: E402
from archc.viz.trace import flatten, trace_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"

if shutil.which("dot") is None and os.environ.get("CI"):
    # under CI a missing Graphviz must fail the run, not skip every picture test
    raise RuntimeError("Graphviz's dot program is not on PATH under CI (.ci/run installs the Debian package graphviz)")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed "
                               "(apt install graphviz); CI installs it")


def _svg_items(path: Path) -> tuple[set[str], set[str]]:
    """The titles of the drawn nodes and of the clusters of an SVG written by Graphviz."""
    root = ET.parse(path).getroot()
    nodes, clusters = set(), set()
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if title is None or title.text is None:
            continue
        if g.get("class") == "node":
            nodes.add(title.text)
        elif g.get("class") == "cluster":
            clusters.add(title.text)
    return nodes, clusters


def _smallest_variant(spec: Path) -> str | None:
    doc = load_spec_doc(spec)
    names = list(doc.variants) if getattr(doc, "variants", None) else []
    if len(names) < 2:
        return None
    return min(names, key=lambda v: graph_cost(build_graph(spec, CompileOptions(variant=v))[1]).params)


@needs_dot
def test_svg_has_a_node_for_every_top_level_node(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "transxnet.yaml"
    g = build_graph(spec)[1]
    out = tmp_path / "t.svg"
    assert main(["viz", str(spec), "--depth", "0", "-o", str(out)]) == 0
    nodes, clusters = _svg_items(out)
    assert {n.id for n in g} <= nodes, {n.id for n in g} - nodes
    assert {f"(input {k})" for k in g.inputs} | {"(output 0)"} <= nodes
    assert not clusters  # depth 0: every block is one node

    # depth 1: the top-level blocks are clusters holding their (collapsed) children
    assert main(["viz", str(spec), "--depth", "1", "-o", str(out)]) == 0
    nodes, clusters = _svg_items(out)
    blocks = {n.id for n in g if n.body is not None and len(n.body)}
    assert {f"cluster_{b}" for b in blocks} == clusters
    for n in g:
        # an op is a node; a block is a cluster whose children are nodes (their own blocks collapsed at depth 1)
        assert (n.id in nodes) if n.id not in blocks else ({f"{n.id}.{m.id}" for m in n.body} <= nodes)


def test_dot_source_labels_op_shape_and_cost(tmp_path: Path) -> None:
    out = tmp_path / "r.dot"
    res = viz_spec(ROOT / "specs" / "resnet.yaml", out, depth=0)
    text = out.read_text()
    assert res.format == "dot" and text.startswith("digraph resnet {")
    # the classifier: its id, op, output type, params and MACs (2,049,000 params, 2,048,000 MACs)
    assert 'fc [label="fc\nlinear\nf32[B,1000]\n2.05M params · 2.05M MACs"' in text
    assert "cluster_" not in text and res.drawn == [n.id for n in build_graph(ROOT / "specs" / "resnet.yaml")[1]]


def test_dot_output_needs_no_graphviz_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot anywhere
    assert main(["viz", str(ROOT / "specs" / "resnet.yaml"), "-o", str(tmp_path / "r.dot")]) == 0
    assert (tmp_path / "r.dot").read_text().startswith("digraph")
    code = main(["viz", str(ROOT / "specs" / "resnet.yaml"), "-o", str(tmp_path / "r.svg")])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "r.svg").exists()
    assert len(err.strip().splitlines()) == 1, err
    assert "apt install graphviz" in err and "brew install graphviz" in err and "Traceback" not in err


def test_bad_output_and_options_are_one_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(ROOT / "specs" / "resnet.yaml")
    for args, message in ((["-o", str(tmp_path / "r.txt")], "cannot tell the picture format"),
                          (["--diff", "deploy", "train", "-o", str(tmp_path / "r.dot")], "must run the first one's passes"),
                          (["--depth", "-1", "-o", str(tmp_path / "r.dot")], "--depth must be 0 or more")):
        assert main(["viz", spec, *args]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_viz_never_writes_over_its_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "m.dot"  # a spec whose name is a picture name
    text = (ROOT / "tests" / "fixtures" / "mini.yaml").read_text()
    spec.write_text(text)
    assert main(["viz", str(spec), "-o", str(spec)]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert spec.read_text() == text


def test_trace_marks_what_each_pass_changed() -> None:
    g = build_graph(ROOT / "specs" / "repvgg.yaml", CompileOptions(variant="a0"))[1]
    t = trace_pipeline(g, PIPELINES["deploy"])
    # the final graph is the pass manager's
    ref = run_pipeline(g, "deploy", check=False).graph
    assert {p: n.op for p, n in flatten(t.after).items()} == {p: n.op for p, n in flatten(ref).items()}
    # the stem's branches: BN folded into the 3x3 and 1x1 convs, the branches merged into one conv
    assert t.removed["stage0.rbr_dense.bn"].passes == ["fold_bn"] and t.removed["stage0.rbr_dense.bn"].kind == "folded"
    assert t.removed["stage0.rbr_1x1"].kind == "merged"  # inlined into a conv first, then merged away
    assert t.changed["stage0.convs"].kind == "merged" and "merge_branches" in t.changed["stage0.convs"].passes
    assert flatten(t.after)["stage0.convs"].op == "conv2d"
    assert "stage0.act" not in t.changed and "stage0.act" not in t.removed  # untouched
    assert t.rewrites["merge_branches"] == 22

    cdcn = build_graph(ROOT / "specs" / "cdcn.yaml")[1]
    t = trace_pipeline(cdcn, PIPELINES["deploy"])
    assert t.changed["stem.conv"].passes == ["fold_cdc", "fold_bn"] and t.changed["stem.conv"].kind == "folded"
    assert t.removed["stem.conv"].kind == "folded"  # the cdc_conv2d of the training form is gone
    assert t.removed["stem.bn"].passes == ["fold_bn"]


@needs_dot
def test_diff_svg_colours_the_changes(tmp_path: Path) -> None:
    out = tmp_path / "d.svg"
    res = viz_spec(ROOT / "specs" / "transxnet.yaml", out, diff=("train", "deploy"))
    assert res.counts["removed"] == 36 and res.counts["folded"] > 0 and res.counts["merged"] > 0
    assert res.rewrites == {"remove_train_only": 36, "fold_bn": 124, "inline_blocks": 4, "merge_branches": 36}
    text = out.read_text()
    nodes, clusters = _svg_items(out)
    assert {"cluster_A", "cluster_B", "(legend)"} <= clusters | nodes
    assert "#cc0000" in text and "#e69138" in text and "#3d85c6" in text  # removed, folded, merged borders
    assert "remove_train_only: 36 rewrites" in text


@needs_dot
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_bundled_spec_draws(spec: Path, tmp_path: Path) -> None:
    variant = _smallest_variant(spec)
    opts = CompileOptions(variant=variant)
    plain = viz_spec(spec, tmp_path / "g.svg", opts)
    nodes, _ = _svg_items(plain.path)
    assert {n.id for n in build_graph(spec, opts)[1] if n.body is None} <= nodes
    diff = viz_spec(spec, tmp_path / "d.svg", opts, diff=("train", "deploy"))
    nodes, clusters = _svg_items(diff.path)
    assert {"cluster_A", "cluster_B"} <= clusters and "(legend)" in nodes
    text = diff.path.read_text()
    assert all(kind in text for kind in diff.counts)  # each kind of change is shown (legend, marks)
    if not diff.rewrites:
        assert "no pass changed the graph" in text


def test_every_pipeline_pass_has_a_kind() -> None:
    from archc.viz.trace import PASS_KINDS

    missing = sorted({p for ps in PIPELINES.values() for p in ps} - set(PASS_KINDS))
    assert not missing, f"give these passes a kind in archc.viz.trace.PASS_KINDS: {missing}"


@needs_dot
def test_docs_pictures_are_made_by_their_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    text = (ROOT / "docs" / "viz.md").read_text()
    commands = [ln for ln in text.splitlines() if ln.startswith("archc viz specs/") and "docs/img/" in ln]
    assert len(commands) >= 3
    monkeypatch.chdir(ROOT)
    for line in commands:
        argv = shlex.split(line)[1:]
        committed = ROOT / argv[argv.index("-o") + 1]
        assert f"]({committed.relative_to(ROOT / 'docs').as_posix()})" in text  # the page shows it
        argv[argv.index("-o") + 1] = str(tmp_path / committed.name)
        assert main(argv) == 0, line
        # the same graph drawn (node and cluster names); Graphviz versions may place them differently
        assert _svg_items(tmp_path / committed.name) == _svg_items(committed), line


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_trace_reaches_the_pass_managers_graph(spec: Path) -> None:
    g = build_graph(spec, CompileOptions(variant=_smallest_variant(spec)))[1]
    for name in ("deploy", "fused"):
        t = trace_pipeline(g, PIPELINES[name])
        ref = run_pipeline(g, name, check=False)
        assert {p: n.op for p, n in flatten(t.after).items()} == {p: n.op for p, n in flatten(ref.graph).items()}
        assert {k: v for k, v in t.rewrites.items() if v} == {s.name: s.rewrites for s in ref.steps if s.rewrites}
        # a mark names a node of its side, and every pass that rewrote something left a mark
        assert set(t.removed) <= set(flatten(g)) and set(t.changed) <= set(flatten(t.after))
        marked = {p for m in [*t.removed.values(), *t.changed.values()] for p in m.passes}
        assert marked == {k for k, v in t.rewrites.items() if v}
