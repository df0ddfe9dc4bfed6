"""The layout's rules, read from the source: imports go one way, contracts are spelled once, modules stay small.

docs/ARCHITECTURE.md describes the layout; these tests keep it true.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from project.test_base_imports import _is_type_checking

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 450
# The output folder's own names: spelled in pipeline/output/layout.py and at most one other module.
OUTPUT_NAME = re.compile(r"^(summary\.json|\.barkpipe-(output|lease|probe)|(metadata|errors|audio|history)/)")
OUTPUT_DIR_NAMES = {"metadata", "errors", "audio", "history"}
RAY_PRIVATE = re.compile(r"ray\._private|ray\._raylet|core_worker|ray\.data\._internal|_logical_plan")
HEAVY = ("torch", "ray", "pyarrow", "pandas", "numpy", "scipy", "transformers", "s3fs", "huggingface_hub")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in ("pipeline", "bark_model") for p in sorted((ROOT / package).rglob("*.py"))}


def code_lines(path: Path) -> list[str]:
    """The module's lines with comments and docstrings blanked (what the code itself spells)."""
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            for n in range(body[0].lineno - 1, body[0].end_lineno):
                lines[n] = ""
    return [line.split("#", 1)[0] if "#" in line and '"' not in line.split("#", 1)[0] else line for line in lines]


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def imports(name: str, path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported module of ours, statement, at module level) for every import in the module, function bodies too."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in _module_level(tree.body)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: -node.level + (1 if path.name == "__init__.py" else 0) or None]
                base = ".".join([*package, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                found.append((target, node, id(node) in top))
    return found


def _module_level(nodes: list[ast.stmt]) -> list[ast.stmt]:
    out = []
    for node in nodes:
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            out.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            out.extend(_module_level(node.body))
            out.extend(_module_level(getattr(node, "orelse", [])))
            out.extend(_module_level(getattr(node, "finalbody", [])))
            for handler in getattr(node, "handlers", []):
                out.extend(_module_level(handler.body))
    return out


def graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        skip = set()
        if not type_checking:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.If) and _is_type_checking(node.test):
                    skip |= {id(n) for n in ast.walk(node)}
        edges[name] = {target for target, node, _ in imports(name, path) if id(node) not in skip}
    return edges


def closure(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_no_import_cycles_at_module_or_function_level():
    edges = graph()
    cycles = sorted({" -> ".join(sorted({m, *sorted(closure(edges, m) & {n for n in edges if m in closure(edges, n)})}))
                     for m in edges if m in closure(edges, m)})
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("entry", ["pipeline.cli.say", "pipeline.speak"])
def test_say_never_reaches_the_ray_pipeline(entry):
    reached = sorted(m for m in closure(graph(), entry) if m.startswith("pipeline.batch"))
    assert not reached, f"{entry} imports {reached}"


def test_imports_go_one_way():
    """Contracts and building blocks never import the Ray pipeline or the CLI; bark_model imports nothing of ours."""
    rules = {
        "bark_model": ("pipeline",),
        "pipeline.text": ("pipeline.batch", "pipeline.cli", "pipeline.output", "pipeline.manifest"),
        "pipeline.audio": ("pipeline.batch", "pipeline.cli", "pipeline.output", "pipeline.manifest", "pipeline.config"),
        "pipeline.weights": ("pipeline.batch", "pipeline.cli", "pipeline.output", "pipeline.manifest"),
        "pipeline.manifest": ("pipeline.batch", "pipeline.cli", "pipeline.output"),
        "pipeline.output": ("pipeline.batch", "pipeline.cli"),
        "pipeline.storage": ("pipeline.batch", "pipeline.cli", "pipeline.output", "pipeline.manifest"),
    }
    wrong = []
    for name, targets in graph().items():
        for source, banned in rules.items():
            if name == source or name.startswith(source + "."):
                wrong += [f"{name} -> {t}" for t in sorted(targets) if t.startswith(banned)]
    assert not wrong, "\n".join(wrong)


def test_output_names_are_spelled_in_at_most_two_modules():
    spelled = {}
    for name, path in MODULES.items():
        hits = [s for s in _strings(path) if OUTPUT_NAME.match(s)]
        hits += _dir_constants(path)
        if hits:
            spelled[name] = sorted(set(hits))
    assert "pipeline.output.layout" in spelled
    assert len(spelled) <= 2, f"the output's names are spelled in {len(spelled)} modules: {spelled}"


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(b[0].value) for n in ast.walk(tree) if (b := getattr(n, "body", None)) and isinstance(b, list)
                  and _is_docstring(b[0])}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def _dir_constants(path: Path) -> list[str]:
    """Module constants naming an output folder (`METADATA = "metadata"`), the other way to spell one."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            found += [v.value for v in values if isinstance(v, ast.Constant) and v.value in OUTPUT_DIR_NAMES]
    return found


def test_ray_private_apis_live_behind_one_door():
    users = sorted(name for name, path in MODULES.items() if any(RAY_PRIVATE.search(line) for line in code_lines(path)))
    assert len(users) <= 1, f"Ray's private APIs are used in {users}"


def test_no_module_is_over_the_size_limit():
    big = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_module_has_a_one_line_docstring():
    missing = [name for name, path in MODULES.items()
               if path.stat().st_size and not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()]
    assert not missing, missing


def test_function_level_imports_say_why():
    """Inside a function only an extra's module (its install hint comes from pipeline.extras) or an import
    with a comment saying why it waits (import time, a cycle it would make); the CLI's commands wait by rule."""
    from pipeline.extras import EXTRAS

    extra_modules = {m.split(".")[0] for modules in EXTRAS.values() for m in modules}
    silent = []
    for name, path in MODULES.items():
        if not name.startswith("pipeline.") or name.startswith("pipeline.cli"):
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        top = {id(n) for n in _module_level(tree.body)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            root = (node.names[0].name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
            if root in extra_modules or root == "__future__":
                continue
            nearby = lines[max(0, node.lineno - 4): node.end_lineno]
            if not any("#" in line for line in nearby):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, f"{len(silent)} function-level imports without a reason:\n" + "\n".join(silent[:40])


def test_help_imports_nothing_heavy():
    """`barkpipe --help` loads only the CLI: every command imports its work when it runs."""
    code = "import sys, pipeline.cli; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & set(HEAVY), f"`import pipeline.cli` loads {sorted(loaded & set(HEAVY))}"


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`(pipeline/[\w/]+\.py)`", doc))
    real = {str(p.relative_to(ROOT)) for name, p in MODULES.items()
            if name.startswith("pipeline") and (p.name != "__init__.py" or name == "pipeline")}
    assert not real - named, f"modules docs/ARCHITECTURE.md does not name: {sorted(real - named)}"
    assert not named - real, f"docs/ARCHITECTURE.md names modules that do not exist: {sorted(named - real)}"


def test_only_the_cli_reaches_into_the_ray_pipeline():
    """pipeline.batch is Ray; outside it only the CLI's `run` imports it, so nothing else pays for Ray or needs it."""
    wrong = [f"{name} -> {t}" for name, targets in graph().items() for t in sorted(targets)
             if t.startswith("pipeline.batch") and not name.startswith(("pipeline.batch", "pipeline.cli"))]
    assert not wrong, "\n".join(wrong)
