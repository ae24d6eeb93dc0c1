"""Safe YAML loading that keeps the position of every value.

Mappings load as :class:`YMap` and sequences as :class:`YList`; both are plain ``dict``/``list``
subclasses that also remember where each of their items came from, so any later stage can point a
diagnostic at the user's text. Scalars stay plain Python values.

Rules enforced here: only the YAML core tags (str, int, float, bool, null, seq, map); duplicate
mapping keys are errors; alias use is bounded (a "billion laughs" document is rejected before it
is expanded); the whole document is bounded in size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from archc.diagnostics import SourceLoc, SpecError, register_source

__all__ = ["YMap", "YList", "load_yaml", "loc_of", "MAX_VALUES", "MAX_ALIASES"]

MAX_VALUES = 200_000
MAX_ALIASES = 1_000

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


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts alias uses so expansion can be bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_count = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Bounded(mark, f"more than {MAX_ALIASES} alias uses")
        return super().compose_node(parent, index)


class _Bounded(Exception):
    def __init__(self, mark: Any, what: str) -> None:
        super().__init__(what)
        self.mark = mark
        self.what = what


def _loc(path: str, node: Node) -> SourceLoc:
    return SourceLoc(path, node.start_mark.line + 1, node.start_mark.column + 1)


def load_yaml(path: str | Path, text: str | None = None) -> Any:
    """Load one YAML document from ``path`` (or ``text``, reported as ``path``).

    >>> load_yaml("x.yaml", "a: [1, 2]\\n")["a"]
    [1, 2]
    """
    spath = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"file not found: '{spath}'", hint="check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read '{spath}': {exc}") from None
    register_source(spath, text)
    loader = _CountingLoader(text)
    try:
        root = loader.get_single_node()
    except _Bounded as exc:
        raise SpecError(
            f"YAML aliases are bounded: {exc.what}",
            SourceLoc(spath, exc.mark.line + 1, exc.mark.column + 1),
            hint="write the repeated structure as a block or a repeat instead of aliases",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = SourceLoc(spath, mark.line + 1, mark.column + 1) if mark else SourceLoc(spath, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", loc, hint="fix the YAML syntax at the caret") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", SourceLoc(spath, 1, 1)) from None
    finally:
        loader.dispose()
    if root is None:
        raise SpecError("the document is empty", SourceLoc(spath, 1, 1), hint="write a YAML mapping")
    budget = [MAX_VALUES]
    return _construct(spath, root, loader, budget)


def _construct(path: str, node: Node, loader: yaml.SafeLoader, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(
            f"the document expands to more than {MAX_VALUES} values",
            _loc(path, node),
            hint="aliases expand to copies; use blocks and repeats for large structures",
        )
    if isinstance(node, ScalarNode):
        if node.tag not in _CORE_SCALAR_TAGS:
            raise SpecError(
                f"YAML tag '{node.tag}' is not allowed (specs are data: only plain scalars, lists and mappings)",
                _loc(path, node),
                hint="remove the tag",
            )
        return loader.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise SpecError(f"YAML tag '{node.tag}' is not allowed", _loc(path, node), hint="remove the tag")
        out = YList()
        out.loc = _loc(path, node)
        for item in node.value:
            out.append(_construct(path, item, loader, budget))
            out.locs.append(_loc(path, item))
        return out
    if isinstance(node, MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise SpecError(f"YAML tag '{node.tag}' is not allowed", _loc(path, node), hint="remove the tag")
        loader.flatten_mapping(node)
        out_map = YMap()
        out_map.loc = _loc(path, node)
        for key_node, value_node in node.value:
            key = _construct(path, key_node, loader, budget)
            if isinstance(key, (dict, list)):
                raise SpecError("mapping keys must be scalars", _loc(path, key_node))
            if key in out_map:
                first = out_map.key_locs[key]
                raise SpecError(
                    f"duplicate key '{key}' (first defined at line {first.line})",
                    _loc(path, key_node),
                    hint="remove or rename one of the two entries",
                )
            out_map[key] = _construct(path, value_node, loader, budget)
            out_map.key_locs[key] = _loc(path, key_node)
            out_map.locs[key] = _loc(path, value_node)
        return out_map
    raise SpecError("unsupported YAML node", _loc(path, node))
