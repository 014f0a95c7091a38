"""Every module of the packages imports on its own, in a fresh interpreter (no import-order dependence).

``tests/unit/test_layering.py`` reads import statements; this test runs them, so a cycle that only
resolves when some other module was imported first (as the CLI's command groups once did) fails here.
The work is done by ``tests/import_each.py`` (one forked child per module, after a preload of the
third-party libraries only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "import_each.py"


def _import_each(*modules: str, pythonpath: str | None = None) -> dict[str, str]:
    environment = dict(os.environ)
    if pythonpath:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, str(RUNNER), *modules], env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_module_imports_alone():
    assert _import_each() == {}


def test_the_check_sees_a_module_that_only_imports_after_another(tmp_path):
    (tmp_path / "cycle_first.py").write_text("import cycle_second\nVALUE = 1\n")
    (tmp_path / "cycle_second.py").write_text("from cycle_first import VALUE\n")
    # imported second in one interpreter, cycle_first works; alone, it cannot finish its own import
    failures = _import_each("cycle_second", "cycle_first", pythonpath=str(tmp_path))
    assert list(failures) == ["cycle_first"]
    assert "VALUE" in failures["cycle_first"]
