"""docs/passes.md: the pass catalogue, with the worked examples of :mod:`archc._docgen.pass_examples`."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from archc._docgen.ops_md import _cell

# -- passes.md -----------------------------------------------------------------------------------

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _md(doc: str | None) -> str:
    """A reST-flavoured docstring as markdown: ``code`` → `code`, :role:`x` → `x`."""
    text = inspect.cleandoc(doc or "")
    text = _ROLE.sub(lambda m: f"`{m[1]}`", text)
    return text.replace("``", "`")


def _placeholder(e: ast.expr, consts: dict[str, Any]) -> str:
    """A value interpolated into a refusal message: a module constant's value, a name or attribute path, else …."""
    if isinstance(e, ast.Name) and isinstance(consts.get(e.id), (int, float, str)) and not isinstance(consts[e.id], bool):
        return str(consts[e.id])
    cur = e
    while isinstance(cur, (ast.Attribute, ast.Subscript)):
        cur = cur.value
    return "{" + ast.unparse(e) + "}" if isinstance(cur, ast.Name) else "{…}"


def _message(e: ast.expr | None, consts: dict[str, Any]) -> list[str]:
    """The message templates a ``return`` expression can produce (strings and f-strings)."""
    if isinstance(e, ast.Constant) and isinstance(e.value, str):
        return [e.value]
    if isinstance(e, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else _placeholder(v.value, consts)  # type: ignore[attr-defined]
                        for v in e.values)]
    if isinstance(e, ast.IfExp):
        return _message(e.body, consts) + _message(e.orelse, consts)
    return []


def rule_reasons(rule: Any) -> list[str]:
    """Every reason a rule gives for not firing: the strings its ``match`` and ``check`` return."""
    found: list[tuple[int, str]] = []
    for cls in type(rule).__mro__:
        if cls.__module__ == "archc.passes.base" or cls is object:
            continue
        consts = {k: v for k, v in vars(sys.modules[cls.__module__]).items() if k.isupper()}
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        for fn in tree.body[0].body:  # type: ignore[attr-defined]
            if isinstance(fn, ast.FunctionDef) and fn.name in ("match", "check"):
                found += [(node.lineno, m) for node in ast.walk(fn) if isinstance(node, ast.Return)
                          for m in _message(node.value, consts)]
    return list(dict.fromkeys(m for _, m in sorted(found)))


def general_refusals() -> list[str]:
    """Reasons the pass manager refuses a rewrite of any rule (``Explanation(..., False, "reason")`` in RulePass)."""
    from archc.passes.base import RulePass

    tree = ast.parse(textwrap.dedent(inspect.getsource(RulePass)))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Explanation" and len(node.args) == 5:
            fired, reason = node.args[3], node.args[4]
            if isinstance(fired, ast.Constant) and fired.value is False:
                out += _message(reason, {})
    return out


def _pass_order() -> list[str]:
    """Registered passes: in the order the pipelines first run them, then any others by name."""
    from archc.passes.base import PASSES
    from archc.passes.pipeline import PIPELINES

    order: list[str] = []
    for passes in PIPELINES.values():
        for p in passes:
            if p not in order:
                order.append(p)
    return order + sorted(p for p in PASSES if p not in order)


def _yaml_block(text: str) -> list[str]:
    return ["```yaml", textwrap.dedent(text).strip("\n"), "```"]


def _fire_example(case: Any, folder: Path) -> list[str]:
    from archc._docgen.pass_examples import example_graph
    from archc.ir.printer import spec_text
    from archc.passes.base import PASSES
    from archc.passes.pipeline import run_pipeline

    before = example_graph(case.before, case.id, folder)
    if case.pass_name in PASSES:
        res = PASSES[case.pass_name].run(before)
        after, rewrites = res.graph, res.rewrites
        what = f"`{case.pass_name}`"
    else:
        pres = run_pipeline(before, case.pass_name, check=False)
        after, rewrites = pres.graph, sum(s.rewrites for s in pres.steps)
        what = f"the `{case.pass_name}` pipeline"
    plural = "" if rewrites == 1 else "s"
    return ([f"Before (`{case.id}`):", ""] + _yaml_block(case.before)
            + ["", f"After {what} ({rewrites} rewrite{plural}):", ""] + _yaml_block(spec_text(after)))


def _refusal_example(case: Any, folder: Path) -> list[str]:
    from archc._docgen.pass_examples import example_graph
    from archc.passes.explain import explain

    g = example_graph(case.before, case.id, folder)
    return ([f"`{case.id}`: {case.rule} refuses —", ""] + _yaml_block(case.before)
            + ["", f"`archc explain {case.id}.yaml --pass {case.pass_name}`:", "", "```", explain(g, case.pass_name), "```"])


def passes_markdown() -> str:
    """The pass catalogue (docs/passes.md): every pass of :data:`archc.passes.base.PASSES`."""
    from archc._docgen.pass_examples import FIRE, NO_FIRE
    from archc.passes.base import PASSES, RulePass
    from archc.passes.pipeline import PIPELINES, TOLERANCE, run_pipeline

    folder = Path(__file__).resolve().parent / "passes"
    order = _pass_order()
    iterations = inspect.signature(run_pipeline).parameters["max_iterations"].default
    lines = [
        "# Pass catalogue",
        "",
        "<!-- Generated from archc.passes (PASSES, PIPELINES, docstrings, archc._docgen.pass_examples) by",
        "     `python -m archc._docgen --passes > docs/passes.md`; do not edit. -->",
        "",
        "A **pass** is a pure function of a typed graph: it returns a new graph and a **weight map**, a plain",
        "function `old state_dict → new state_dict` that converts the weights of the module generated from the",
        "old graph into weights of the module generated from the new one (it can be run on random tensors",
        "without building a model). A pass never mutates its input, and never folds a weight that is also used",
        "outside the match. Most passes are made of **rewrite rules**: a rule *matches* a candidate site",
        "anchored at one node, *checks* its conditions (a refused candidate carries the reason) and *rewrites*",
        "it; the pass applies its rules to a fixpoint inside every graph body. A block body shared by several",
        "instances (a repeat) is rewritten once, and its weight map runs under every instance's state-dict",
        "prefix, so converted keys stay those of the generated modules (`stages.1.blocks.0.conv.weight`).",
        "",
        "Each pass below states its math (from its docstrings, the single source), its rules and every",
        "reason a rule gives for refusing a site, and worked examples from `archc/_docgen/pass_cases/*.yaml`,",
        "which the test suite also runs. An example's *after* graph is the pass's real output, written back",
        "in the spec language (`archc.ir.printer`): attributes at their op's default are left out (a conv's",
        "`bias: true`, its `kernel: 1`), and block params appear bound (blocks are printed as instantiated).",
        "",
        "## Pipelines",
        "",
        "Passes run in named pipelines (`archc compile SPEC --pipeline NAME`, `archc passes` lists them). A",
        "pipeline runs its passes in order and repeats the whole sequence until no pass rewrites anything (at",
        f"most {iterations} rounds), because one fold can enable another.",
        "",
        "| pipeline | passes, in order |",
        "|---|---|",
    ]
    for name, passes in PIPELINES.items():
        shown = " → ".join(f"[`{p}`](#{p})" for p in passes) if passes else "none: the graph as written"
        lines.append(f"| `{name}` | {shown} |")
    lines += [
        "",
        "**Certified equivalence.** Every pass marked exact is checked on every compile: the graph before",
        "the pipeline is lowered to PyTorch and run in float64, eval mode, with the given weights",
        "(`--weights train.pth`) or random ones (every parameter perturbed, BatchNorm statistics random, so no",
        "branch is numerically invisible); after each pass that rewrote something, the current graph's",
        "module runs on the same input with the weights converted by the weight maps so far, loaded with",
        "`strict=True`. The error is `max|a − b| / max|a|` over all outputs; above",
        f"{TOLERANCE:.0e} the compile fails with a `PassError` naming the pass. The compile report",
        "lists every pass with its rewrite count and its maximum relative error (`--no-check` skips the check).",
        "",
        "**`--debug`** (`archc compile SPEC --pipeline deploy --debug`) also runs the IR verifier after every",
        "pass; a failure names the pass and the passes that ran before it.",
        "",
        "**`archc explain SPEC --pass NAME`** runs the deploy passes that come before `NAME` (uncertified),",
        "then `NAME`, and prints one line per candidate site and rule: `graph/node: rule fired`, or",
        "`graph/node: rule refused: <the condition that failed>`. The refusal messages of each rule are",
        "listed below, and each pass has refused examples with their `archc explain` output.",
        "",
    ]
    general = general_refusals()
    if general:
        lines += ["Besides its own conditions, any rule's rewrite is refused by the pass manager with:", ""]
        lines += [f"- `{m}`" for m in general] + [""]
    pipeline_cases = [c for c in FIRE if c.pass_name in PIPELINES]
    for case in pipeline_cases:
        lines += [f"### Example: the `{case.pass_name}` pipeline", ""] + _fire_example(case, folder) + [""]
    lines += [
        "## Passes",
        "",
        "| pass | rules | exact | in pipelines | summary |",
        "|---|---|---|---|---|",
    ]
    for name in order:
        p = PASSES[name]
        rules = ", ".join(f"`{r.name}`" for r in p.rules) if isinstance(p, RulePass) else "—"
        where = ", ".join(k for k, v in PIPELINES.items() if name in v) or "—"
        lines.append(f"| [`{name}`](#{name}) | {rules} | {'yes' if p.exact else 'no'} | {where} | {_cell(p.doc)} |")
    for name in order:
        p = PASSES[name]
        cls = type(p)
        module = sys.modules[cls.__module__]
        lines += ["", f"## {name}", "", f"*{p.doc}*" if p.doc else "", ""]
        steps = [f"`{k}` (step {', '.join(str(i + 1) for i, q in enumerate(v) if q == name)})"
                 for k, v in PIPELINES.items() if name in v]
        lines.append(f"- source: `{cls.__module__.replace('.', '/')}.py`, class `{cls.__name__}`")
        lines.append(f"- exact: {'yes (certified in float64 on every compile)' if p.exact else 'no'}")
        lines.append(f"- runs in: {', '.join(steps) if steps else 'no pipeline'}")
        lines += ["", "### What it computes", "", _md(cls.__doc__ or module.__doc__), ""]
        if isinstance(p, RulePass):
            lines += ["### Rules", ""]
            for r in p.rules:
                anchored = f" — anchored at {', '.join(f'`{o}`' for o in r.anchor_ops)} nodes" if r.anchor_ops else ""
                what = _md(type(r).__doc__) or (p.doc if len(p.rules) == 1 else "") or "(no description)"
                lines += [f"**`{r.name}`**{anchored}. {what}", ""]
                reasons = rule_reasons(r)
                if reasons:
                    lines += ["Refuses a candidate (as `archc explain` prints it):", ""]
                    lines += [f"- `{m}`" for m in reasons]
                else:
                    lines.append("No conditions of its own: every match is rewritten"
                                 + (" (unless a general refusal applies, see [Pipelines](#pipelines))." if general else "."))
                lines.append("")
        fires = [c for c in FIRE if c.pass_name == name]
        refusals = [c for c in NO_FIRE if c.pass_name == name]
        lines += ["### Examples", ""]
        if not fires and not refusals:
            lines += ["No example yet (add one to `archc/_docgen/pass_cases/`).", ""]
        shown: set[str] = set()
        for case in fires:
            if case.rule in shown:
                continue
            shown.add(case.rule)
            lines += [f"#### {case.rule}", ""] + _fire_example(case, folder) + [""]
        more = [c for c in fires if c.rule in shown and c not in [next(f for f in fires if f.rule == c.rule)]]
        if more:
            lines += ["<details>", f"<summary>{len(more)} more example{'s' if len(more) > 1 else ''} of {name}</summary>", ""]
            for case in more:
                lines += [f"#### {case.rule}: {case.id}", ""] + _fire_example(case, folder) + [""]
            lines += ["</details>", ""]
        if refusals:
            lines += ["#### Refused", ""]
            for case in refusals:
                lines += _refusal_example(case, folder) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"

