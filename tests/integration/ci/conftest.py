"""Fixtures for ci tests: real fixture RPMs, a throw-away recipes git repository, ci settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import git
import pytest

from asci.config import PROJECT_ROOT

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "rpms"


@pytest.fixture(scope="session")
def fixture_rpms(tmp_path_factory) -> Path:
    """The packages of tests/fixtures/rpms/packages.txt, built once with rpmbuild."""
    out = tmp_path_factory.mktemp("ci-rpms")
    subprocess.run([str(FIXTURES / "build.sh"), str(out)], check=True, capture_output=True)
    return out


def rpm(folder: Path, name: str, version: str) -> Path:
    """The built RPM file of ``name`` at ``version`` (flat folder, canonical names)."""
    matches = sorted(folder.glob(f"{name}-{version}-*.rpm"))
    assert matches, f"no {name}-{version} in {folder}"
    return matches[0]


@pytest.fixture
def recipes_repo(tmp_path) -> Path:
    """A git repository holding recipes/base and the mx-crystallography and imaging recipes, one commit."""
    root = tmp_path / "recipes-repo"
    shutil.copytree(PROJECT_ROOT / "recipes" / "base", root / "recipes" / "base")
    (root / "recipes" / "environments").mkdir()
    for name in ("schema.yaml", "mx-crystallography.yaml", "imaging.yaml"):
        shutil.copy(PROJECT_ROOT / "recipes" / "environments" / name, root / "recipes" / "environments" / name)
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.index.commit("recipes", author=git.Actor("t", "t@example.invalid"), committer=git.Actor("t", "t@example.invalid"))
    return root / "recipes"


def commit_all(recipes_dir: Path, message: str) -> str:
    repo = git.Repo(recipes_dir, search_parent_directories=True)
    repo.git.add(A=True)
    actor = git.Actor("t", "t@example.invalid")
    return repo.index.commit(message, author=actor, committer=actor).hexsha


@pytest.fixture
def ci_settings(settings, recipes_repo):
    """Settings on SQLite with the throw-away recipes and no debounce."""
    return settings.replace(recipes_dir=recipes_repo, ci_debounce_s=0, ci_retry_base_s=0)
