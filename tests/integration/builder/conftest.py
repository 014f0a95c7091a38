"""Fixtures for builder integration tests: unique environment names, and clean-up of every image and
registry tag a test creates (the fixture RPMs and the recipes repository come from tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest


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
            registry.delete_manifest(registry.connect(settings), name, tags[0])
        for image in docker_client.images.list():
            references = image.tags + image.attrs.get("RepoDigests", [])
            if any(f"/{name}:" in ref or f"/{name}@" in ref for ref in references):
                docker_client.images.remove(image.id, force=True)
