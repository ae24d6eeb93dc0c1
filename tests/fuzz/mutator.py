"""A mutation fuzzer over the bundled specs: mutate the YAML text, run validate + compile, classify.

Mutations work on the text, so they reach every layer (YAML syntax, schema, expressions, shapes, code
generation): delete a line, swap two values, retype a value, duplicate a key, put a huge, negative or
zero number (or a non-finite one) where a number was. One to three mutations per mutant, drawn from a
seeded PRNG: mutant ``(spec, seed)`` is reproducible.

Each mutant is classified by :func:`run_case`:

* ``rejected`` — a clean :class:`~archc.diagnostics.ArchcError` (the CLI prints one line, exits 1);
* ``accepted`` — it compiles, and the module (built on the meta device: no memory, no compute) has
  exactly the analytic parameter and buffer counts and the inferred output shapes;
* ``unchecked`` — it compiles, but an op has no meta kernel, so shapes were not compared;
* ``internal`` — any other exception (a bug: the CLI would print "internal error");
* ``mismatch`` — analytic counts or shapes differ from the module's (or the module refuses what the
  analyser accepted);
* ``hang`` — more than :data:`TIME_LIMIT` seconds of CPU time.
"""

from __future__ import annotations

import random
import re
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
#: CPU seconds one mutant may take (validate + compile + module checks)
TIME_LIMIT = 5.0

_KV = re.compile(r"^(\s*(?:-\s+)?[\w.$]+:\s+)(\S.*?)\s*$")
_FLOW_KV = re.compile(r"(?<=[{,\s])(\w+): ([^,{}\[\]\n]+)")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE]-?\d+)?(?![\w.])")
_RETYPES = ["abc", "[1, 2]", "{a: 1}", "true", "null", "1.5", "'${x}'", "-3", "'${1 / 0}'", "[]", "{}", '"conv\\n"',
            "'${[0] * 100000}'", "'${round(10**30, -10**18)}'", "~", "[[1]]", "'${divisible(c, 8, 0)}'"]
_EXTREMES = ["0", "-1", "1000000000", "3000000000", "99999999999999999999", "1e300", ".nan", ".inf", "-.inf", "-100",
             "65537", "2"]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _content(lines: list[str]) -> list[int]:
    return [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]


def delete_line(text: str, rng: random.Random) -> str:
    lines = _lines(text)
    idx = _content(lines)
    if idx:
        del lines[rng.choice(idx)]
    return "".join(lines)


def swap_values(text: str, rng: random.Random) -> str:
    lines = _lines(text)
    kv = [i for i in _content(lines) if _KV.match(lines[i].rstrip("\n"))]
    if len(kv) >= 2:
        a, b = rng.sample(kv, 2)
        ma, mb = _KV.match(lines[a].rstrip("\n")), _KV.match(lines[b].rstrip("\n"))
        assert ma and mb
        lines[a] = ma.group(1) + mb.group(2) + "\n"
        lines[b] = mb.group(1) + ma.group(2) + "\n"
        return "".join(lines)
    return _flow_edit(text, rng, lambda k, v: f"{k}: {rng.choice(_RETYPES)}")


def _flow_edit(text: str, rng: random.Random, edit) -> str:  # noqa: ANN001 - (key, value) -> replacement text
    hits = list(_FLOW_KV.finditer(text))
    if not hits:
        return text
    m = rng.choice(hits)
    return text[: m.start()] + edit(m.group(1), m.group(2)) + text[m.end():]


def retype_value(text: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return _flow_edit(text, rng, lambda k, v: f"{k}: {rng.choice(_RETYPES)}")
    lines = _lines(text)
    kv = [i for i in _content(lines) if _KV.match(lines[i].rstrip("\n"))]
    if kv:
        i = rng.choice(kv)
        m = _KV.match(lines[i].rstrip("\n"))
        assert m
        lines[i] = m.group(1) + rng.choice(_RETYPES) + "\n"
    return "".join(lines)


def duplicate_key(text: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return _flow_edit(text, rng, lambda k, v: f"{k}: {v}, {k}: {rng.choice(_RETYPES + [v])}")
    lines = _lines(text)
    kv = [i for i in _content(lines) if _KV.match(lines[i].rstrip("\n"))]
    if kv:
        i = rng.choice(kv)
        lines.insert(i + 1, lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
    return "".join(lines)


def extreme_number(text: str, rng: random.Random) -> str:
    hits = list(_NUMBER.finditer(text))
    if not hits:
        return text
    m = rng.choice(hits)
    return text[: m.start()] + rng.choice(_EXTREMES) + text[m.end():]


MUTATIONS = {f.__name__: f for f in (delete_line, swap_values, retype_value, duplicate_key, extreme_number)}


def mutant(spec: Path, seed: int) -> tuple[str, list[str]]:
    """The mutated text of ``spec`` for ``seed`` and the mutations applied."""
    rng = random.Random(f"{spec.name}:{seed}")
    text = spec.read_text(encoding="utf-8")
    applied = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        name = rng.choice(sorted(MUTATIONS))
        text = MUTATIONS[name](text, rng)
        applied.append(name)
    return text, applied


@dataclass
class Outcome:
    spec: str
    seed: int
    kind: str
    seconds: float
    detail: str = ""


class _Hang(BaseException):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang()


def _check_module(source: str, cost: object, graph: object) -> tuple[str, str]:
    import torch

    from archc.passes.equivalence import module_from_source

    try:
        with torch.device("meta"):
            model = module_from_source(source).create_model().eval()
    except Exception as exc:  # noqa: BLE001 - the module refusing what the analyser accepted is the finding
        return "mismatch", f"module construction: {type(exc).__name__}: {str(exc)[:200]}"
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    if params != cost.params or buffers != cost.buffers:  # type: ignore[attr-defined]
        return "mismatch", f"params {params} vs analytic {cost.params}, buffers {buffers} vs {cost.buffers}"  # type: ignore[attr-defined]
    inputs = []
    for t in graph.inputs.values():  # type: ignore[attr-defined]
        dtype = getattr(torch, t.dtype)
        inputs.append(torch.empty(t.concrete(1), dtype=dtype, device="meta"))
    try:
        with torch.no_grad():
            out = model(*inputs)
    except NotImplementedError:
        return "unchecked", "an op has no meta kernel"
    except Exception as exc:  # noqa: BLE001
        return "mismatch", f"forward: {type(exc).__name__}: {str(exc)[:200]}"
    # named outputs come back as a dict in the order the spec lists them
    outs = tuple(out.values()) if isinstance(out, dict) else out if isinstance(out, tuple) else (out,)
    got = [tuple(o.shape) for o in outs]
    want = [t.concrete(1) for t in graph.output_types]  # type: ignore[attr-defined]
    if got != want:
        return "mismatch", f"output shapes {got} vs inferred {want}"
    return "accepted", ""


def run_case(spec: Path, seed: int, time_limit: float = TIME_LIMIT) -> Outcome:
    """Validate and compile mutant ``(spec, seed)`` and classify it (see the module docstring)."""
    from archc.compiler import CompileOptions, compile_spec
    from archc.diagnostics import ArchcError

    text, applied = mutant(spec, seed)
    old = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, time_limit)  # CPU time: a busy shared machine is no hang
    t0 = time.process_time()
    try:
        try:
            res = compile_spec(spec, CompileOptions(), text=text)
        except ArchcError as exc:
            return Outcome(spec.name, seed, "rejected", time.process_time() - t0, exc.message[:160])
        kind, detail = _check_module(res.source, res.cost, res.graph)
        return Outcome(spec.name, seed, kind, time.process_time() - t0, detail)
    except _Hang:
        return Outcome(spec.name, seed, "hang", time.process_time() - t0, "+".join(applied))
    except RecursionError:
        return Outcome(spec.name, seed, "internal", time.process_time() - t0, "RecursionError")
    except Exception as exc:  # noqa: BLE001 - an internal error is the finding
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome(spec.name, seed, "internal", time.process_time() - t0,
                       f"{type(exc).__name__}: {str(exc)[:160]} at {Path(tb.filename).name}:{tb.lineno} ({'+'.join(applied)})")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def cases(start: int = 0) -> Iterator[tuple[Path, int]]:
    """Mutants in a fixed order: every spec in turn, seeds counting up from ``start``."""
    seed = start
    while True:
        for spec in SPECS:
            yield spec, seed
        seed += 1
