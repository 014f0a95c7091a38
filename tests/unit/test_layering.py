"""The layering the code obeys: asci (core) < rpmrepo < builder < broker < ci < web.

Imports point down only (function-local imports included), a package is used by the others only
through its root module and the names in its ``__all__``, and the core names no feature package,
not even as a string in its code.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from asci.config import PROJECT_ROOT

LAYERS = ["asci", "rpmrepo", "builder", "broker", "ci", "web"]
FEATURES = LAYERS[1:]
RANK = {name: rank for rank, name in enumerate(LAYERS)}


def _modules(package: str) -> list[Path]:
    return sorted(path for path in (PROJECT_ROOT / package).rglob("*.py") if "node_modules" not in path.parts)


def _imports(path: Path):
    """``(line, module, names)`` of every absolute import in a file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def _violations(package: str) -> list[str]:
    found = []
    for path in _modules(package):
        where = path.relative_to(PROJECT_ROOT)
        for line, module, names in _imports(path):
            target = module.split(".")[0]
            if target not in RANK or target == package:
                continue
            if RANK[target] > RANK[package]:
                found.append(f"{where}:{line} imports {module}, a layer above {package}")
            elif target in FEATURES and module != target:
                found.append(f"{where}:{line} reaches into {module}; use the public face `{target}`")
            elif target in FEATURES and names:
                public = set(importlib.import_module(target).__all__)
                private = [name for name in names if name not in public]
                if private:
                    found.append(f"{where}:{line} imports {', '.join(private)} from {target}, not in its __all__")
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_down_and_through_public_faces(package):
    assert _violations(package) == []


def test_the_check_catches_an_upward_import_and_a_reach_into_internals(tmp_path, monkeypatch):
    fake_root = tmp_path / "project"
    (fake_root / "builder").mkdir(parents=True)
    (fake_root / "builder" / "bad.py").write_text("import web\nfrom broker.models import Node\n"
                                                  "def f():\n    from ci.queue import claim\n")
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_ROOT", fake_root)
    problems = _violations("builder")
    assert any("imports web, a layer above" in p for p in problems)
    assert any("imports broker.models, a layer above" in p for p in problems)
    assert any("imports ci.queue, a layer above" in p for p in problems)  # function-local imports count
    (fake_root / "builder" / "bad.py").write_text("from rpmrepo.models import RpmPackage\nfrom rpmrepo import _x\n")
    problems = _violations("builder")
    assert any("reaches into rpmrepo.models" in p for p in problems)
    assert any("imports _x from rpmrepo, not in its __all__" in p for p in problems)


def test_every_public_name_exists():
    for package in FEATURES:
        module = importlib.import_module(package)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], f"{package}.__all__ names what it does not have: {missing}"


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_the_core_names_no_feature_package():
    named = []
    for path in _modules("asci"):
        tree = ast.parse(path.read_text())
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                words = {word.split(".")[0] for word in node.value.replace(":", " ").split()}
                hits = words & set(FEATURES)
                if hits:
                    named.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.value[:60]!r}")
    assert named == []
