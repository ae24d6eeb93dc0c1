"""Generated documentation: the op reference, the JSON Schema of spec files and the pass catalogue.

All are rendered from the code, so they cannot drift from it::

    python -m archc._docgen > docs/ops.md
    python -m archc._docgen --schema > docs/spec.schema.json
    python -m archc._docgen --passes > docs/passes.md

The pass catalogue takes each pass's math from its docstrings, its refusal conditions from the
``return "reason"`` statements of its rules, and its examples from :mod:`archc._docgen.pass_examples`,
whose *after* graphs it produces by running the pass (printed back with :func:`archc.ir.printer.spec_text`).
``tests/unit/test_docs.py`` checks that the committed files equal what this module renders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from archc._docgen.ops_md import ops_markdown
from archc._docgen.passes_md import general_refusals, passes_markdown, rule_reasons
from archc._docgen.schema import schema_json, schema_text

__all__ = ["ops_markdown", "schema_json", "schema_text", "passes_markdown", "rule_reasons", "general_refusals", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archc._docgen", description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--schema", action="store_true", help="print docs/spec.schema.json instead of docs/ops.md")
    what.add_argument("--passes", action="store_true", help="print docs/passes.md instead of docs/ops.md")
    args = ap.parse_args(argv)
    text = schema_text() if args.schema else passes_markdown() if args.passes else ops_markdown()
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
    else:  # bytes: UTF-8 and '\n' line ends whatever the platform and locale
        sys.stdout.flush()
        out.write(text.encode("utf-8"))
        out.flush()
    return 0

