"""What a plain `pip install barkpipe` gives must be enough to import every module of both packages."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bark_model", "pipeline")


def base_distributions() -> set[str]:
    """The distributions a base install brings: pyproject's dependencies and everything they require."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(spec) for spec in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in map(Requirement, requires):
            wanted = requirement.extras or {""}
            if spec.marker is None or any(spec.marker.evaluate({"extra": extra}) for extra in wanted):
                todo.append(spec)
    return seen


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported by statements that run when the module is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)  # imports under TYPE_CHECKING never run
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
            elif isinstance(node, ast.ClassDef):
                visit(node.body)  # a class body runs at import too

    visit(tree.body)
    return names


def all_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in the module, function bodies included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def test_every_module_level_import_is_a_base_dependency():
    base = base_distributions()
    owners = metadata.packages_distributions()
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted(module_level_imports(path)):
                if name in PACKAGES or name in sys.stdlib_module_names or name == "__future__":
                    continue
                dists = {canonicalize_name(d) for d in owners.get(name, [])}
                if not dists & base:
                    offenders.append(f"{path.relative_to(ROOT)}: {name} ({', '.join(sorted(dists)) or 'not installed'})")
    assert not offenders, (
        "module-level imports that a base install does not provide (import them inside the feature's function, "
        "with pipeline.extras.require, or add them to pyproject's dependencies):\n" + "\n".join(offenders)
    )


def test_every_other_import_belongs_to_an_extra_that_declares_it():
    """A function-level import is fine only for a module of an extra, which the feature checks first."""
    from pipeline.extras import EXTRAS

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        extra: {canonicalize_name(Requirement(spec).name) for spec in specs}
        for extra, specs in project["optional-dependencies"].items()
    }
    base, owners = base_distributions(), metadata.packages_distributions()
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted(all_imports(path)):
                if name in PACKAGES or name in sys.stdlib_module_names or name == "__future__":
                    continue
                if {canonicalize_name(d) for d in owners.get(name, [])} & base:
                    continue
                extras = [extra for extra, modules in EXTRAS.items() if name in modules]
                if not extras:
                    offenders.append(f"{path.relative_to(ROOT)}: {name} is in no extra of pipeline.extras.EXTRAS")
                for extra in extras:
                    dists = {canonicalize_name(d) for d in owners.get(name, [])}
                    if dists and not dists & declared.get(extra, set()):
                        offenders.append(f"{path.relative_to(ROOT)}: {name} ({', '.join(dists)}) not in [{extra}]")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_imports_in_try_blocks_and_class_bodies(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import pyloudnorm\n"
        "try:\n    import av\nexcept ImportError:\n    import mutagen\n"
        "class A:\n    import jiwer\n"
        "def f():\n    import librosa\n"
    )
    assert module_level_imports(source) == {"os", "typing", "av", "mutagen", "jiwer"}


@pytest.mark.parametrize("feature", ["barkpipe book", "quality.speaker", "quality.speech (pocketsphinx)"])
def test_a_missing_extra_is_one_line_naming_the_install_command(monkeypatch, feature):
    from pipeline import extras

    for name in extras.EXTRAS["audiobook"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails, as where it is not installed
    with pytest.raises(ValueError) as caught:
        extras.require(feature)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(feature)
    assert "pip install 'barkpipe[audiobook]'" in message


def test_book_without_the_extra_exits_2_with_the_install_command(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setitem(sys.modules, "av", None)
    result = CliRunner().invoke(app, ["book", str(tmp_path), "--out", str(tmp_path / "b.m4b")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'barkpipe[audiobook]'" in lines[0], result.output
