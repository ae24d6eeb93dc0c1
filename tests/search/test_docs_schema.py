"""docs/search_space.schema.json and docs/search_space.md fit the loader and the shipped spaces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from archc.search import space as sp

from .conftest import ROOT

SCHEMA = ROOT / "docs" / "search_space.schema.json"
DOC = ROOT / "docs" / "search_space.md"


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def test_schema_keys_match_the_loader() -> None:
    s = _schema()
    assert set(s["properties"]) == set(sp.TOP_KEYS)
    assert set(s["$defs"]["choice"]["anyOf"][1]["properties"]) == set(sp.CHOICE_KEYS)
    assert set(s["$defs"]["cell"]["properties"]) == set(sp.CELL_KEYS)
    ev = s["$defs"]["evaluator"]["properties"]
    assert set(ev) == set(sp.EVAL_KEYS)
    assert set(ev["data"]["properties"]) == set(sp.DATA_KEYS)
    assert set(ev["train"]["properties"]) == set(sp.TRAIN_KEYS)
    assert set(ev["latency"]["properties"]) == set(sp.LATENCY_KEYS)
    assert set(s["$defs"]["study"]["properties"]) == set(sp.STUDY_KEYS)
    assert set(s["properties"]["constraints"]["properties"]) == set(sp.CONSTRAINT_METRICS)
    metrics = set(sp.COST_METRICS) | {sp.LATENCY_METRIC} | set(sp.ZERO_COST_METRICS) | {m for ms in sp.TRAIN_METRICS.values() for m in ms}
    assert set(s["properties"]["objectives"]["propertyNames"]["enum"]) == metrics


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_validate_against_the_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))
    errors = list(jsonschema.Draft202012Validator(_schema()).iter_errors(data))
    assert not errors, [e.message for e in errors]


def test_doc_covers_every_key_sampler_and_pruner() -> None:
    text = DOC.read_text(encoding="utf-8")
    for key in (*sp.TOP_KEYS, *sp.CHOICE_KEYS, *sp.CELL_KEYS, *sp.EVAL_KEYS, *sp.STUDY_KEYS):
        assert re.search(rf"`{re.escape(key)}`|\b{re.escape(key)}:", text), key
    for name in (*sp.SAMPLERS, *sp.PRUNERS, *sp.ZERO_COST_METRICS):
        assert f"`{name}`" in text, name
    for spath in sorted((ROOT / "search_spaces").glob("*.yaml")):
        assert f"search_spaces/{spath.name}" in text, spath.name
