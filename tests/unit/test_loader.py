"""The safe YAML loader: positions of every value, duplicate keys, tags, aliases, merge keys, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.diagnostics import SourceLoc, SpecError
from archc.spec import loader
from archc.spec.loader import MAX_ALIASES, MAX_DEPTH, MAX_VALUES, YList, YMap, load_yaml, loc_of


def load(text: str) -> object:
    return load_yaml("t.yaml", text)


def fails(text: str, line: int, col: int, *fragments: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(text)
    err = info.value
    assert err.loc == SourceLoc("t.yaml", line, col), err
    for fragment in fragments:
        assert fragment in err.message, err.message
    return err


# -- positions ------------------------------------------------------------------------------------

NESTED = """\
archc: 1
graph:
  - stem: {op: conv2d, out: 48}
  - blocks:
      op: stage
      dims: [1, 2,
             3]
"""


def test_containers_are_ymap_and_ylist() -> None:
    doc = load(NESTED)
    assert isinstance(doc, YMap) and isinstance(doc["graph"], YList)
    assert isinstance(doc["graph"][0]["stem"], YMap)
    assert doc == {"archc": 1, "graph": [{"stem": {"op": "conv2d", "out": 48}},
                                         {"blocks": {"op": "stage", "dims": [1, 2, 3]}}]}


def test_positions_of_nested_values() -> None:
    doc = load(NESTED)
    assert doc.loc == SourceLoc("t.yaml", 1, 1)
    assert doc.key_loc("graph") == SourceLoc("t.yaml", 2, 1)
    graph = doc["graph"]
    assert doc.loc_of("graph") == graph.loc == SourceLoc("t.yaml", 3, 3)
    assert graph.loc_of(0) == SourceLoc("t.yaml", 3, 5)
    assert graph.loc_of(1) == SourceLoc("t.yaml", 4, 5)
    stem = graph[0]["stem"]
    assert stem.loc == SourceLoc("t.yaml", 3, 11)
    assert stem.key_loc("out") == SourceLoc("t.yaml", 3, 24)
    assert stem.loc_of("out") == SourceLoc("t.yaml", 3, 29)
    blocks = graph[1]["blocks"]
    assert blocks.key_loc("op") == SourceLoc("t.yaml", 5, 7)
    assert blocks.loc_of("op") == SourceLoc("t.yaml", 5, 11)
    dims = blocks["dims"]
    assert [dims.loc_of(i) for i in range(3)] == [SourceLoc("t.yaml", 6, 14), SourceLoc("t.yaml", 6, 17),
                                                  SourceLoc("t.yaml", 7, 14)]


def test_position_fallbacks() -> None:
    doc = load(NESTED)
    assert doc.loc_of("missing") == doc.loc
    assert doc.loc_of("missing", SourceLoc("t.yaml", 9, 9)) == SourceLoc("t.yaml", 9, 9)
    assert doc.key_loc("missing") == doc.loc
    assert doc["graph"].loc_of(7) == doc["graph"].loc
    assert loc_of(doc["graph"]) == doc["graph"].loc
    assert loc_of(48, SourceLoc("t.yaml", 1, 1)) == SourceLoc("t.yaml", 1, 1)


def test_scalars_are_plain_values() -> None:
    doc = load("a: 1\nb: 1.5\nc: true\nd: null\ne: text\nf: '1'\ng: !!str 3\nh: 1.0e-5\n")
    assert doc == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "text", "f": "1", "g": "3", "h": 1.0e-5}
    assert type(doc["a"]) is int and type(doc["e"]) is str


def test_reads_a_file(tmp_path: Path) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text("a: [1]\n", encoding="utf-8")
    doc = load_yaml(p)
    assert doc == {"a": [1]}
    assert doc["a"].loc == SourceLoc(str(p), 1, 4)


# -- duplicate keys -------------------------------------------------------------------------------

def test_duplicate_top_level_key() -> None:
    err = fails("name: a\narchc: 1\nname: b\n", 3, 1, "duplicate key 'name' (first defined at line 1)")
    assert err.hint == "remove or rename one of the two entries"


def test_duplicate_nested_flow_key() -> None:
    fails("graph:\n  - stem: {op: conv2d, out: 16, out: 32}\n", 2, 33, "duplicate key 'out' (first defined at line 2)")


def test_duplicate_key_in_block_mapping() -> None:
    fails("params:\n  a: 1\n  b: 2\n  a: 3\n", 4, 3, "duplicate key 'a' (first defined at line 2)")


def test_duplicate_keys_of_different_spelling_of_the_same_value() -> None:
    fails("1: a\n0x1: b\n", 2, 1, "duplicate key '1'")


def test_non_scalar_key() -> None:
    fails("? [1, 2]\n: 3\n", 1, 3, "mapping keys must be scalars")


# -- tags -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "tag"), [
    ("a: !!python/object:os.system {}\n", "tag:yaml.org,2002:python/object:os.system"),
    ("a: !!python/object/apply:os.system ['echo pwned']\n", "tag:yaml.org,2002:python/object/apply:os.system"),
    ("a: !!python/object/new:builtins.dict {}\n", "tag:yaml.org,2002:python/object/new:builtins.dict"),
    ("a: !!python/name:os.system ''\n", "tag:yaml.org,2002:python/name:os.system"),
    ("a: !!python/tuple [1, 2]\n", "tag:yaml.org,2002:python/tuple"),
    ("a: !custom 3\n", "!custom"),
    ("a: !!binary aGVsbG8=\n", "tag:yaml.org,2002:binary"),
    ("a: !!set {x, y}\n", "tag:yaml.org,2002:set"),
    ("a: !!omap [x: 1]\n", "tag:yaml.org,2002:omap"),
])
def test_non_core_tags_are_rejected(text: str, tag: str) -> None:
    err = fails(text, 1, 4, f"YAML tag '{tag}' is not allowed")
    assert err.hint and "remove the tag" in err.hint


def test_implicit_timestamp_is_rejected_with_a_quoting_hint() -> None:
    err = fails("date: 2024-01-31\n", 1, 7, "YAML tag 'tag:yaml.org,2002:timestamp' is not allowed")
    assert "quote the value" in err.hint
    assert load("date: '2024-01-31'\n") == {"date": "2024-01-31"}


def test_tag_nested_deep_inside_is_found() -> None:
    fails("graph:\n  - a: {op: conv2d, out: !!python/object/apply:os.getpid []}\n", 2, 26, "python/object/apply")


def test_core_tags_are_allowed() -> None:
    doc = load("a: !!int '3'\nb: !!float 1\nc: !!bool 'true'\nd: !!null ''\ne: !!seq [1]\nf: !!map {x: 1}\n")
    assert doc == {"a": 3, "b": 1.0, "c": True, "d": None, "e": [1], "f": {"x": 1}}


# -- aliases ----------------------------------------------------------------------------------------

def test_aliases_copy_values() -> None:
    doc = load("dims: &d [48, 96]\nagain: *d\n")
    assert doc["again"] == [48, 96]
    assert doc["again"].loc == SourceLoc("t.yaml", 1, 7)  # an alias's values keep the anchor's positions


def test_alias_uses_are_bounded() -> None:
    ok = "a: &a 1\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n"
    assert len(load(ok)["b"]) == MAX_ALIASES
    too_many = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    err = fails(too_many, 2, 5 + 4 * MAX_ALIASES, f"more than {MAX_ALIASES} alias uses")
    assert "instead of aliases" in err.hint


def test_billion_laughs_is_rejected_at_the_alias_before_expansion() -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for k in range(1, 10):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 10) + "]")
    text = "\n".join(lines) + "\n"
    # l4 stands for 111,111 values and l0..l4 hold 123,461, so the first *l4 crosses MAX_VALUES
    err = fails(text, 6, 10, f"YAML alias '*l4' expands the document to more than {MAX_VALUES} values")
    assert "instead of aliases" in err.hint


def test_recursive_alias_is_rejected() -> None:
    err = fails("a: &a [1, *a]\n", 1, 11, "YAML alias '*a' refers to a value that contains it")
    assert err.hint
    fails("a: &a {b: {c: *a}}\n", 1, 15, "refers to a value that contains it")


def test_undefined_alias_is_a_syntax_error() -> None:
    fails("a: *nope\n", 1, 4, "YAML syntax error", "undefined alias")


# -- merge keys -----------------------------------------------------------------------------------

MERGE = """\
base: &base {kernel: 3, out: 16, bias: false}
node: {<<: *base, out: 32}
"""


def test_merge_key_copies_missing_keys_and_own_keys_win() -> None:
    node = load(MERGE)["node"]
    assert node == {"kernel": 3, "out": 32, "bias": False}
    assert list(node) == ["kernel", "bias", "out"]  # merged keys first, then the mapping's own


def test_merged_values_keep_their_positions() -> None:
    node = load(MERGE)["node"]
    assert node.loc == SourceLoc("t.yaml", 2, 7)
    assert node.loc_of("out") == SourceLoc("t.yaml", 2, 24)  # the override
    assert node.key_loc("out") == SourceLoc("t.yaml", 2, 19)
    assert node.loc_of("kernel") == SourceLoc("t.yaml", 1, 22)  # where the merged value is written
    assert node.key_loc("kernel") == SourceLoc("t.yaml", 1, 14)


def test_merge_list_earlier_mappings_win() -> None:
    doc = load("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], w: 0}\n")
    assert doc["c"] == {"x": 1, "y": 1, "z": 2, "w": 0}


def test_merge_of_an_inline_mapping() -> None:
    assert load("c: {<<: {x: 1}, y: 2}\n")["c"] == {"x": 1, "y": 2}


def test_merge_does_not_modify_the_anchored_mapping() -> None:
    doc = load("a: &a {x: 1}\nb: {<<: *a, y: 2}\nc: *a\n")
    assert doc["a"] == doc["c"] == {"x": 1}


def test_merge_nested_merges() -> None:
    doc = load("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n")
    assert doc["c"] == {"x": 1, "y": 2, "z": 3}


def test_merge_of_a_non_mapping_is_rejected() -> None:
    err = fails("c: {<<: 3}\n", 1, 9, "a merge key '<<' takes a mapping or a list of mappings")
    assert err.hint
    fails("a: &a [1]\nc: {<<: [*a]}\n", 1, 4, "takes a mapping or a list of mappings")  # at the value


def test_duplicate_own_keys_are_still_errors_with_a_merge() -> None:
    fails("a: &a {x: 1}\nb: {<<: *a, y: 2, y: 3}\n", 2, 19, "duplicate key 'y'")


def test_quoted_merge_key_is_an_ordinary_key() -> None:
    assert load("a: {'<<': 1}\n") == {"a": {"<<": 1}}


# -- bounds and whole-document errors ---------------------------------------------------------------

def test_nesting_depth_is_bounded() -> None:
    ok = "a: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    assert load(ok)
    deep = "a: " + "[" * 400 + "]" * 400 + "\n"
    err = fails(deep, 1, 4 + MAX_DEPTH - 1, f"the document nests more than {MAX_DEPTH} levels deep")
    assert err.hint


def test_plain_document_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_VALUES", 1_000)  # the same rule, without composing 200,000 values
    text = "a: [" + ", ".join(["1"] * 1_000) + "]\n"
    # the mapping, its key and the list count too: item 997 (0-based) is one too many
    fails(text, 1, 5 + 3 * 997, "the document has more than 1000 values")


def test_empty_document() -> None:
    for text in ("", "# only a comment\n"):
        err = fails(text, 1, 1, "the document is empty")
        assert "archc: 1" in err.hint


def test_syntax_error_position_and_context() -> None:
    err = fails("graph:\n  - stem: {op: conv2d, out: 16\n  - act: gelu\n", 3, 8, "YAML syntax error")
    assert "while parsing a flow mapping that starts at line 2, column 11" in err.hint


def test_tab_indentation() -> None:
    fails("a:\n\t- 1\n", 2, 1, "YAML syntax error", "'\\t'")


def test_more_than_one_document() -> None:
    fails("a: 1\n---\nb: 2\n", 2, 1, "YAML syntax error", "another document")


def test_missing_file_is_located_at_the_whole_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_yaml(missing)
    err = info.value
    assert err.loc == SourceLoc(str(missing), 0, 0)
    assert err.headline() == f"{missing}: error: file not found"
    assert err.render() == f"{missing}: error: file not found\n  help: check the path"


def test_invalid_utf8_is_located_at_the_byte(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("archc: 1\nname: ñandú caf".encode() + b"\xe9\n")
    with pytest.raises(SpecError) as info:
        load_yaml(p)
    assert info.value.loc == SourceLoc(str(p), 2, 16)  # columns count characters, not bytes
    assert "not valid UTF-8 (byte 0xe9)" in info.value.message


def test_control_character_is_located() -> None:
    err = fails("a: 1\nb: x\x07y\n", 2, 5, "character #x0007 is not allowed in YAML")
    assert err.hint


def test_the_value_indicator_key_is_a_string() -> None:
    assert load("'=': 1\nb: =\n") == {"=": 1, "b": "="}
