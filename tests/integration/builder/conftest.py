"""Fixtures for builder integration tests: fixture RPMs, a throw-away recipes git repository,
unique environment names, and clean-up of every image and registry tag a test creates."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import git
import pytest

from asci.config import PROJECT_ROOT

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rpms"
GIT_ENV = {"GIT_AUTHOR_NAME": "ASCI tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
           "GIT_COMMITTER_NAME": "ASCI tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid"}


@pytest.fixture(scope="session")
def fixture_rpms(tmp_path_factory) -> Path:
    """The packages of tests/fixtures/rpms/packages.txt, built once per session with rpmbuild."""
    for program in ("rpmbuild", "createrepo_c", "dnf"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    out = tmp_path_factory.mktemp("builder-rpms")
    subprocess.run([str(FIXTURES / "build.sh"), str(out)], check=True, capture_output=True)
    return out


class RecipesRepo:
    """A git repository holding recipes/base (copied, so base image tags are unchanged) and recipes."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(PROJECT_ROOT / "recipes" / "base", root / "base")
        (root / "environments").mkdir()
        shutil.copy(PROJECT_ROOT / "recipes" / "environments" / "schema.yaml", root / "environments")
        self.repo = git.Repo.init(root)
        self.commit("base definitions")

    def write(self, name: str, text: str, commit: bool = True) -> Path:
        path = self.root / "environments" / f"{name}.yaml"
        path.write_text(text)
        if commit:
            self.commit(f"recipe {name}")
        return path

    def commit(self, message: str) -> str:
        self.repo.git.add(A=True)
        self.repo.git.commit("-m", message, "--allow-empty", env=GIT_ENV)
        return self.repo.head.commit.hexsha

    def tags(self) -> list[str]:
        return sorted(t.name for t in self.repo.tags)


@pytest.fixture
def recipes_repo(tmp_path) -> RecipesRepo:
    return RecipesRepo(tmp_path / "recipes")


def recipe_text(name: str, packages: list[str], checks: list[str] | None = None, extra: str = "") -> str:
    lines = [f"name: {name}", "beamline: TEST", "description: Builder integration test environment",
             "base: debian12-mate", "packages:", *[f"  - {p}" for p in packages],
             "env:", "  ASCI_TEST_ENV: hello world", "launchers:", "  - name: Demo Viewer",
             "    command: /usr/bin/asci-demo-viewer", "    icon: applications-science"]
    if checks:
        lines += ["checks:", *[f"  - {c}" for c in checks]]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def env_name(request, docker_client, settings):
    """A unique environment name; its registry tags and local images are removed afterwards."""
    from builder import registry
    names: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"asci-test-{prefix}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        return name

    yield make
    for name in names:
        for _ in range(10):
            tags = registry.list_tags(settings.registry, name)
            if not tags:
                break
            registry.delete_manifest(settings.registry, name, tags[0])
        for image in docker_client.images.list():
            references = image.tags + image.attrs.get("RepoDigests", [])
            if any(f"/{name}:" in ref or f"/{name}@" in ref for ref in references):
                docker_client.images.remove(image.id, force=True)


def images_named(client, name: str) -> list[str]:
    """Local tags and digests of images of environment ``name`` (reproductions included)."""
    return [ref for image in client.images.list() for ref in image.tags + image.attrs.get("RepoDigests", [])
            if f"/{name}:" in ref or f"/{name}@" in ref]
