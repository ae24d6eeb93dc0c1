"""Safe YAML loading that keeps the position of every value.

Mappings load as :class:`YMap` and sequences as :class:`YList`; both are plain ``dict``/``list``
subclasses that also remember where each of their items came from, so any later stage can point a
diagnostic at the user's text. Scalars stay plain Python values.

Rules enforced here: only the YAML core tags (str, int, float, bool, null, seq, map); duplicate
mapping keys are errors; merge keys (``<<: *base``) copy the keys the mapping does not set itself;
alias use is bounded and an alias may not refer to a value that contains it; nesting depth and the
size of the document *as expanded* are bounded while it is composed, so a "billion laughs" document
is rejected at the offending alias before anything is expanded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from archc.diagnostics import SourceLoc, SpecError, register_source

__all__ = ["YMap", "YList", "load_yaml", "loc_of", "MAX_VALUES", "MAX_ALIASES", "MAX_DEPTH"]

MAX_VALUES = 200_000
MAX_ALIASES = 1_000
MAX_DEPTH = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"  # a plain '=' (YAML 1.1 "value" key); read as the string '='
_ALIAS_HINT = "write the repeated structure as a block or a repeat instead of aliases"

_CORE_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


class YMap(dict):
    """A mapping that remembers its own position, its keys' and its values' positions."""

    loc: SourceLoc
    key_locs: dict[Any, SourceLoc]
    locs: dict[Any, SourceLoc]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loc = SourceLoc("<unknown>", 0, 0)
        self.key_locs = {}
        self.locs = {}

    def loc_of(self, key: Any, default: SourceLoc | None = None) -> SourceLoc:
        """Position of the value under ``key`` (falling back to the mapping itself)."""
        return self.locs.get(key, default or self.loc)

    def key_loc(self, key: Any) -> SourceLoc:
        return self.key_locs.get(key, self.loc)


class YList(list):
    """A sequence that remembers its own position and its items' positions."""

    loc: SourceLoc
    locs: list[SourceLoc]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.loc = SourceLoc("<unknown>", 0, 0)
        self.locs = []

    def loc_of(self, index: int) -> SourceLoc:
        if 0 <= index < len(self.locs):
            return self.locs[index]
        return self.loc


def loc_of(value: Any, fallback: SourceLoc | None = None) -> SourceLoc | None:
    """Position of a loaded container, or ``fallback`` for scalars."""
    return getattr(value, "loc", fallback)


class _FastLoader(yaml.cyaml.CParser, yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """libyaml's scanner and parser under PyYAML's own composer (so the bounds below still see every node).

    Parsing in C is ~10x faster than the pure-Python parser; composing stays in Python because the
    composer is where aliases and sizes are bounded.
    """

    def __init__(self, stream: str) -> None:
        yaml.cyaml.CParser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    check_node = yaml.composer.Composer.check_node
    get_node = yaml.composer.Composer.get_node
    get_single_node = yaml.composer.Composer.get_single_node


class _Counting:
    """A composer that bounds aliases, nesting and the expanded size of the document.

    Every composed node gets its expanded size (itself plus everything below it, aliases counted
    as the copies they stand for), so the size of the document as it would be expanded is known
    at each alias, before anything is expanded.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_count = 0
        self.total = 0
        self.sizes: dict[int, int] = {}
        self.open_anchors: list[str | None] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                raise _Bounded(event.start_mark, f"YAML aliases are bounded: more than {MAX_ALIASES} alias uses", _ALIAS_HINT)
            if event.anchor in self.open_anchors:
                raise _Bounded(
                    event.start_mark,
                    f"YAML alias '*{event.anchor}' refers to a value that contains it (a recursive structure)",
                    "a spec is a tree: write the value out instead of referring to its own anchor",
                )
            node = super().compose_node(parent, index)
            self.total += self.sizes.get(id(node), 1)
            if self.total > MAX_VALUES:
                raise _Bounded(
                    event.start_mark,
                    f"YAML alias '*{event.anchor}' expands the document to more than {MAX_VALUES} values",
                    _ALIAS_HINT,
                )
            return node
        if len(self.open_anchors) >= MAX_DEPTH:
            raise _Bounded(event.start_mark, f"the document nests more than {MAX_DEPTH} levels deep", "flatten the structure")
        self.total += 1
        if self.total > MAX_VALUES:
            raise _Bounded(event.start_mark, f"the document has more than {MAX_VALUES} values", "split the spec into blocks")
        self.open_anchors.append(getattr(event, "anchor", None))
        try:
            node = super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()
        if isinstance(node, SequenceNode):
            self.sizes[id(node)] = 1 + sum(self.sizes.get(id(v), 1) for v in node.value)
        elif isinstance(node, MappingNode):
            self.sizes[id(node)] = 1 + sum(self.sizes.get(id(k), 1) + self.sizes.get(id(v), 1) for k, v in node.value)
        return node


class _CountingLoader(_Counting, yaml.SafeLoader):  # type: ignore[misc]
    """The pure-Python loader: exact positions in every syntax error message."""


class _FastCountingLoader(_Counting, _FastLoader):  # type: ignore[misc]
    """The libyaml-backed loader, used first; a document it rejects is read again by :class:`_CountingLoader`."""


# YAML 1.1 (PyYAML) reads '1e-5' as a string; specs follow YAML 1.2, where it is a float
for _cls in (_CountingLoader, _FastCountingLoader):
    _cls.add_implicit_resolver(
    "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )


class _Bounded(Exception):
    def __init__(self, mark: Any, message: str, hint: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.hint = hint


def _loc(path: str, node: Node) -> SourceLoc:
    return SourceLoc(path, node.start_mark.line + 1, node.start_mark.column + 1)


def load_yaml(path: str | Path, text: str | None = None) -> Any:
    """Load one YAML document from ``path`` (or ``text``, reported as ``path``).

    >>> load_yaml("x.yaml", "a: [1, 2]\\n")["a"]
    [1, 2]
    """
    spath = str(path)
    if text is None:
        text = _read(Path(path), spath)
    register_source(spath, text)
    if getattr(yaml, "__with_libyaml__", False):
        fast = _FastCountingLoader(text)
        try:
            root = fast.get_single_node()
        except _Bounded as exc:
            raise SpecError(exc.message, SourceLoc(spath, exc.mark.line + 1, exc.mark.column + 1), hint=exc.hint) from None
        except yaml.YAMLError:
            root = None  # read again below: the pure-Python reader places syntax errors exactly
        else:
            if root is None:
                raise SpecError("the document is empty", SourceLoc(spath, 1, 1), hint="write a YAML mapping, starting with 'archc: 1'")
            return _construct(spath, root, fast)
        finally:
            fast.dispose()
    try:
        loader = _CountingLoader(text)  # the reader checks every character up front
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        loc = SourceLoc(spath, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        raise SpecError(f"character #x{exc.character:04x} is not allowed in YAML", loc,
                        hint="remove it: YAML allows printable characters, tabs and line breaks") from None
    try:
        root = loader.get_single_node()
    except _Bounded as exc:
        raise SpecError(exc.message, SourceLoc(spath, exc.mark.line + 1, exc.mark.column + 1), hint=exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = SourceLoc(spath, mark.line + 1, mark.column + 1) if mark else SourceLoc(spath, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        hint = "fix the YAML syntax at the caret"
        cm = exc.context_mark
        if exc.problem and exc.context and cm is not None and (cm.line, cm.column) != (mark.line, mark.column):
            hint += f" ({exc.context} that starts at line {cm.line + 1}, column {cm.column + 1})"
        raise SpecError(f"YAML syntax error: {problem}", loc, hint=hint) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", SourceLoc(spath, 1, 1)) from None
    finally:
        loader.dispose()
    if root is None:
        raise SpecError("the document is empty", SourceLoc(spath, 1, 1), hint="write a YAML mapping, starting with 'archc: 1'")
    return _construct(spath, root, loader)


def _read(path: Path, spath: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("file not found", SourceLoc(spath, 0, 0), hint="check the path") from None
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", SourceLoc(spath, 0, 0)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8")) + 1  # in characters, like YAML's columns
        raise SpecError(
            f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x})", SourceLoc(spath, line, col),
            hint="save the spec as UTF-8",
        ) from None


def _checked_scalar(path: str, node: Node, value: Any) -> Any:
    """``value``, unless it is a string that is not valid Unicode (a lone surrogate from a \\ud800 escape)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise SpecError(f"the string holds a lone surrogate \\u{ord(bad):04x}, which is not valid Unicode",
                            _loc(path, node), hint="remove the escape or write the character itself") from None
    return value


def _construct(path: str, node: Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, ScalarNode):
        if node.tag == _VALUE_TAG:
            return _checked_scalar(path, node, node.value)
        if node.tag not in _CORE_SCALAR_TAGS:
            raise SpecError(
                f"YAML tag '{node.tag}' is not allowed (specs are data: only plain scalars, lists and mappings)",
                _loc(path, node),
                hint="remove the tag, or quote the value if it is meant as a string",
            )
        try:
            value = loader.construct_object(node, deep=True)
        except ValueError as exc:  # an integer longer than Python converts from text, a bad base-60 number, ...
            msg = str(exc).split(";")[0]
            raise SpecError(f"cannot read the number {node.value[:20]}{'…' if len(node.value) > 20 else ''}: {msg}",
                            _loc(path, node), hint="write a smaller number (sizes are at most a few billion)") from None
        return _checked_scalar(path, node, value)
    if isinstance(node, SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise SpecError(f"YAML tag '{node.tag}' is not allowed", _loc(path, node), hint="remove the tag")
        out = YList()
        out.loc = _loc(path, node)
        for item in node.value:
            out.append(_construct(path, item, loader))
            out.locs.append(_loc(path, item))
        return out
    if isinstance(node, MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise SpecError(f"YAML tag '{node.tag}' is not allowed", _loc(path, node), hint="remove the tag")
        own = YMap()
        own.loc = _loc(path, node)
        merged: list[YMap] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, MappingNode):
                        raise SpecError(
                            "a merge key '<<' takes a mapping or a list of mappings",
                            _loc(path, src),
                            hint="e.g. '<<: *defaults' where '&defaults' marks a mapping",
                        )
                    merged.append(_construct(path, src, loader))
                continue
            key = _construct(path, key_node, loader)
            if isinstance(key, (dict, list)):
                raise SpecError("mapping keys must be scalars", _loc(path, key_node))
            if key in own:
                first = own.key_locs[key]
                raise SpecError(
                    f"duplicate key '{key}' (first defined at line {first.line})",
                    _loc(path, key_node),
                    hint="remove or rename one of the two entries",
                )
            own[key] = _construct(path, value_node, loader)
            own.key_locs[key] = _loc(path, key_node)
            own.locs[key] = _loc(path, value_node)
        if not merged:
            return own
        # merged keys come first (in the order of the merged mappings); the mapping's own keys override
        # them, and an earlier merged mapping overrides a later one
        out_map = YMap()
        out_map.loc = own.loc
        for src in merged:
            for key, value in src.items():
                if key not in out_map and key not in own:
                    out_map[key] = value
                    out_map.key_locs[key] = src.key_locs[key]
                    out_map.locs[key] = src.locs[key]
        for key, value in own.items():
            out_map[key] = value
            out_map.key_locs[key] = own.key_locs[key]
            out_map.locs[key] = own.locs[key]
        return out_map
    raise SpecError("unsupported YAML node", _loc(path, node))
