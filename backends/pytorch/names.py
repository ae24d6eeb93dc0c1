"""Identifiers and text of generated source.

Every identifier the generator writes — class names, constructor arguments, forward arguments and
locals, the loop variable, attributes holding per-instance values — is allocated here so that it
never shadows a name the generated code uses (the imports, the helpers, the other classes, Python's
builtins, ``self``) nor another identifier of the same scope; a spec name that would gets a suffix
(a number for class names, trailing ``_`` otherwise). Docs are escaped so docstrings read back
exactly, and spec expressions are written as the Python the generated module evaluates.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import keyword
import re
from typing import Any

from archc.backends.pytorch.timm import TIMM_NAMES

from archc.ir.graph import Graph, Ref
from archc.ops import HELPERS
from archc.spec.expr import compile_expr, divisible

_FN_MAP = {"ceil": "math.ceil", "floor": "math.floor", "sqrt": "math.sqrt", "divisible": "_divisible"}
# the analyser's own function, emitted by source: validate and the generated module compute the same widths
_DIVISIBLE = inspect.getsource(divisible).replace("def divisible(", "def _divisible(", 1)


#: module-level names of generated files (imports, constants, the factory, the divisible helper) and
#: Python's builtins: no identifier the generator allocates may take one of them
_GLOBAL_NAMES = frozenset({"math", "torch", "nn", "F", "Tuple", "INPUT_SHAPE", "INPUT_SHAPES", "create_model",
                           "_divisible", "self"}) | frozenset(TIMM_NAMES) | frozenset(dir(builtins)) | frozenset(HELPERS)


def _unique(base: str, taken: set[str] | frozenset[str], sep: str = "_") -> str:
    """``base``, or ``base`` with a suffix (``_``, ``__``, ... or ``2``, ``3``, ...) when it is taken."""
    name, k = base, 2
    while name in taken or keyword.iskeyword(name):
        name = name + "_" if sep == "_" else f"{base}{k}"
        k += 1
    return name


def _doc_text(text: str) -> str:
    """``text`` (stripped) escaped to sit between triple double quotes and read back unchanged."""
    out = []
    for ch in text.strip():
        if ch == "\\":
            out.append("\\\\")
        elif ch < " " and ch not in "\n\t" or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    # a quote that starts a run of quotes, or ends the text, could close the string: escape it
    return re.sub(r'"(?="|$)', r'\\"', "".join(out))


def class_name(name: str) -> str:
    """CamelCase class name for a block or spec name (names with capitals are kept)."""
    clean = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if any(c.isupper() for c in clean):
        out = clean.replace("_", "")
    else:
        out = "".join(p[:1].upper() + p[1:] for p in clean.split("_") if p)
    if not out or out[0].isdigit():
        out = "M" + out
    return out


def to_python(src: str) -> str:
    """A spec expression as the Python that generated code evaluates (functions mapped to their helpers)."""

    class T(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            self.generic_visit(node)
            if isinstance(node.func, ast.Name) and node.func.id in _FN_MAP:
                node.func = ast.Name(_FN_MAP[node.func.id])
            return node

    return ast.unparse(T().visit(compile_expr(src).tree))


#: the module-level definitions an expression from :func:`to_python` may call
HELPER_SOURCE = "import math\n\n" + _DIVISIBLE


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    return "any"


def _annotation(t: str) -> str:
    return {"int": "int", "float": "float", "bool": "bool", "str": "str", "list": "list"}.get(t, "")


class _Locals:
    """Python names of the values of one forward: inputs, node outputs and the loop variable.

    A graph input or single-output node is named after itself; output k of a multi-output node
    after ``<node>_<output name or k>``; a name that is taken (by an earlier name or one the code
    uses) gets trailing ``_``. On the main path — the chain from the first input — a node whose
    first input dies at it carries that name on (``x = self.norm(x)``), freeing dead values early as
    hand-written forwards do; every other value is named after the node that computed it (never after
    another input: ``relpos = self.osra(h, relpos)`` named an attention output after a bias).
    """

    def __init__(self, body: Graph) -> None:
        taken = set(_GLOBAL_NAMES)
        self.names: dict[tuple[str, int], str] = {}

        def add(key: tuple[str, int], base: str) -> None:
            self.names[key] = _unique(base, taken)
            taken.add(self.names[key])

        for name in body.inputs:
            add((name, 0), name)
        multi = []
        for n in body:
            if len(n.types) == 1:
                add((n.id, 0), n.id)
            else:
                multi.append(n)
        for n in multi:
            for k in range(len(n.types)):
                out = n.out_names[k] if k < len(n.out_names) else str(k)
                add((n.id, k), f"{n.id}_{out}")
        self.loop = _unique("blk", taken)
        self._reuse_dead(body)

    def _reuse_dead(self, body: Graph) -> None:
        """A single-output node takes the name of an input that dies there (``x = self.conv(x)``).

        Rebinding the name frees the dead tensor at once, as hand-written forwards do; without it
        every intermediate stays alive until ``forward`` returns.
        """
        last: dict[tuple[str, int], int] = {}
        order = list(body)
        main = self.names[(next(iter(body.inputs)), 0)] if body.inputs else None
        for i, n in enumerate(order):
            for r in n.inputs:
                last[(r.node, r.index)] = i
        for r in body.outputs:
            last[(r.node, r.index)] = len(order)
        for i, n in enumerate(order):
            if len(n.types) != 1:
                continue
            # only the value a node transforms (its first input) passes its name on — never another input's
            # name to an unrelated value; a loop feeds its extra inputs to every item, so they must stay bound
            cands = n.inputs[:1] if n.inputs and n.inputs[0] not in n.inputs[1:] else ()
            for r in cands:
                key = (r.node, r.index)
                if self.names[key] != main:
                    continue  # off the main path a value keeps the name of the node that computed it
                if last.get(key) == i and (r.node in body.inputs or len(body.nodes[r.node].types) == 1):
                    self.names[(n.id, 0)] = self.names[key]
                    break

    def __getitem__(self, ref: Ref) -> str:
        return self.names[(ref.node, ref.index)]
