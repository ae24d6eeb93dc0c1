"""What the generator learns about the model class's arguments by expanding the spec again."""

from __future__ import annotations

from pathlib import Path

from archc.backends.pytorch.model_args import perturbed, train_time_only

from archc.compiler import CompileOptions, build_graph

ROOT = Path(__file__).resolve().parents[2]


def _graph(name: str, variant: str | None = None, **params: object) -> object:
    return build_graph(ROOT / "specs" / f"{name}.yaml", CompileOptions(variant=variant, params={"img": 64, **params}))[1]


def test_a_rate_is_moved_whatever_its_value() -> None:
    """0.1 (TransXNet-T's rate) was a fixed point of the earlier move v / 2 + 0.05: nothing was learned."""
    for rate in (0.0, 0.1, 0.3, 0.5, 0.9):
        g = _graph("convnext", drop_path_rate=rate)
        alt = perturbed(g, frozenset({"drop_path_rate"}))
        assert alt is not None
        rates = sorted({n.attrs["p"] for n in _leaves(alt) if n.op == "drop_path"})
        assert rates != sorted({n.attrs["p"] for n in _leaves(g) if n.op == "drop_path"}), rate


def test_only_the_rate_reaches_train_time_ops_alone() -> None:
    g = _graph("transxnet", "t")
    args = frozenset({"num_classes", "in_chans", "drop_path_rate"})
    assert train_time_only(g, args) == {"drop_path_rate"}
    assert train_time_only(_graph("hornet"), args) == {"drop_path_rate"}


def _leaves(g: object) -> list:
    out = []
    for n in g:  # type: ignore[attr-defined]
        out += _leaves(n.body) if n.body is not None else [n]
    return out
