"""docs/PIPELINE.md matches the code: the config reference is generated, summary.json's keys are all listed."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIX = "run `python scripts/config_reference.py` (or `make config-doc`) and commit docs/PIPELINE.md"


def _generator():
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_reference_is_up_to_date():
    gen = _generator()
    doc = gen.DOC.read_text(encoding="utf-8")
    assert gen.render(doc) == doc, f"the config reference in docs/PIPELINE.md is stale: {FIX}"


def test_the_generator_is_idempotent_and_lists_every_field():
    from pipeline.config import RunConfig

    gen = _generator()
    doc = gen.DOC.read_text(encoding="utf-8")
    once = gen.render(doc)
    assert gen.render(once) == once
    for section, _, model in gen.sections(RunConfig):
        for name, field in model.model_fields.items():
            assert f"`{section}.{name}`" in once
            assert field.description, f"{section}.{name} has no description: give it Field(description=...)"


def test_type_names_read_well():
    from typing import Any, Literal

    gen = _generator()
    assert gen.type_name(int | None) == "integer or null"
    assert gen.type_name(Literal["a", "b"]) == "one of `a`, `b`"
    assert gen.type_name(dict[str, Any]) == "mapping" and gen.type_name(list[str]) == "list of string"


def _summary_keys() -> set[str]:
    """Every string key of the dict literals in output/summary.py's finish_summary (summary.json's keys)."""
    tree = ast.parse((REPO / "pipeline" / "output" / "summary.py").read_text())
    [finish] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "finish_summary"]
    return {k.value for d in ast.walk(finish) if isinstance(d, ast.Dict)
            for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}  # fmt: skip


def test_every_summary_json_key_is_documented():
    doc = (REPO / "docs" / "PIPELINE.md").read_text(encoding="utf-8")
    section = doc[doc.index("- `summary.json`") : doc.index("## How a run works")]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    missing = sorted(_summary_keys() - documented)
    assert not missing, f"summary.json keys missing from docs/PIPELINE.md (Output section): {missing}"
