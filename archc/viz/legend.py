"""The legend of a diff picture: one coloured row per kind of change, and the rewrites of each pass."""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import TYPE_CHECKING

from archc.viz.dot import KIND_COLOURS
from archc.viz.trace import KINDS, Trace

if TYPE_CHECKING:
    import graphviz

__all__ = ["legend"]

_MEANING = {
    "removed": "dropped (train-only or dead)",
    "folded": "folded into a neighbour / absorbed a fold",
    "merged": "merged with parallel branches or siblings",
    "fused": "flattened into a fused region",
    "inlined": "block replaced by its single op",
    "rewritten": "rewritten by another pass",
}


def legend(dot: graphviz.Digraph, trace: Trace) -> None:
    """Add a legend node: each kind's colour with the nodes it marks (before / after), then the passes' rewrites."""
    before = Counter(m.kind for m in trace.removed.values())
    after = Counter(m.kind for m in trace.changed.values())
    rows = ['<TR><TD COLSPAN="3"><B>what the passes did</B></TD></TR>',
            '<TR><TD></TD><TD>nodes before</TD><TD>nodes after</TD></TR>']
    for kind in KINDS:
        if not before[kind] and not after[kind]:
            continue
        fill, border = KIND_COLOURS[kind]
        rows.append(f'<TR><TD BGCOLOR="{fill}" COLOR="{border}">{kind}: {escape(_MEANING[kind])}</TD>'
                    f'<TD>{before[kind]}</TD><TD>{after[kind]}</TD></TR>')
    if not trace.removed and not trace.changed:
        rows.append('<TR><TD COLSPAN="3">no pass changed the graph</TD></TR>')
    fired = [(name, n) for name, n in trace.rewrites.items() if n]
    if fired:
        text = "<BR/>".join(f"{escape(name)}: {n} rewrite{'s' if n != 1 else ''}" for name, n in fired)
        rows.append(f'<TR><TD COLSPAN="3" ALIGN="LEFT">{text}</TD></TR>')
    table = '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">' + "".join(rows) + "</TABLE>"
    dot.node("(legend)", f"<{table}>", shape="plaintext")
