"""Import each named module in an interpreter of its own and report the ones that fail.

Run as ``python tests/import_each.py MODULE...``; prints a JSON object ``{module: error}`` of the
failures (empty when every import works) and exits 0. To stay fast on a small machine, the parent
first imports the third-party libraries the project uses (never a module of the project, which it
checks), then forks one child per module: each child starts with none of the project's modules
loaded, exactly as ``python -c "import MODULE"`` would, without paying for Flask and SQLAlchemy
again. A module that only imports because another project module was imported first fails here.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asci", "rpmrepo", "builder", "broker", "ci", "web")


def project_modules() -> list[str]:
    """Every importable module of the project's packages (Alembic's migration scripts are loaded by path)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "node_modules" in relative.parts or "migrations" in relative.parts:
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(".".join(parts))
    return found


def third_party_imports() -> set[str]:
    """Modules the project imports (``a.b`` and, for ``from a import b``, ``a.b`` too) outside the stdlib and project."""
    names: set[str] = set()
    for module in project_modules():
        path = ROOT.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names
            if name.split(".")[0] not in PACKAGES and name.split(".")[0] not in sys.stdlib_module_names}


def _preload() -> None:
    for name in sorted(third_party_imports()):
        try:
            importlib.import_module(name)
        except Exception:  # not a module (a name imported from one), or an optional library that is missing
            pass
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in PACKAGES)
    if loaded:
        raise SystemExit(f"a third-party import loaded project modules: {loaded}")


def _child(module: str, write_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what a module prints on import stays out of the report
    try:
        importlib.import_module(module)
        message = ""
    except BaseException:
        message = traceback.format_exc(limit=-3).strip().splitlines()[-1] or "failed"
    os.write(write_fd, message.encode())
    os._exit(0)


def import_each(modules: list[str], parallel: int) -> dict[str, str]:
    """Import every module in a forked child of its own, ``parallel`` at a time; ``{module: error}``."""
    _preload()
    failures: dict[str, str] = {}
    running: dict[int, tuple[str, int]] = {}
    pending = list(modules)
    while pending or running:
        while pending and len(running) < parallel:
            module = pending.pop(0)
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                _child(module, write_fd)
            os.close(write_fd)
            running[pid] = (module, read_fd)
        pid, status = os.wait()
        module, read_fd = running.pop(pid)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        if message or os.waitstatus_to_exitcode(status) != 0:
            failures[module] = message or f"exit status {os.waitstatus_to_exitcode(status)}"
    return failures


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(import_each(sys.argv[1:] or project_modules(), parallel=max(2, os.cpu_count() or 2))))
