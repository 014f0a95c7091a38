"""After a failed build, only what this build pushed is deleted from the registry."""

import pytest
from docker.errors import ImageNotFound

from asci.config import Settings
from builder import build, registry


class Images:
    def __init__(self, repo_digests):
        self.repo_digests = repo_digests

    def get(self, reference):
        if self.repo_digests is None:
            raise ImageNotFound("gone")
        return type("Image", (), {"attrs": {"RepoDigests": self.repo_digests}})()


@pytest.fixture
def deleted(monkeypatch):
    calls = []
    monkeypatch.setattr(registry, "delete_manifest", lambda reg, name, ref: calls.append(ref) or True)
    monkeypatch.setattr(registry, "manifest_digest", lambda reg, name, ref: "sha256:" + "b" * 64)
    return calls


def _withdraw(repo_digests, digest=""):
    client = type("Client", (), {"images": Images(repo_digests)})()
    build._withdraw_push(Settings(), client, "mx", "2026.11.25.1", "127.0.0.1:5000/mx:2026.11.25.1", digest)


def test_a_known_digest_is_deleted_by_digest(deleted):
    _withdraw([], digest="sha256:" + "a" * 64)
    assert deleted == ["sha256:" + "a" * 64]


def test_a_tag_holding_another_build_s_image_is_left_alone(deleted):
    _withdraw(["127.0.0.1:5000/mx@sha256:" + "c" * 64])
    _withdraw(None)
    assert deleted == []


def test_a_tag_holding_this_image_is_deleted(deleted):
    _withdraw(["127.0.0.1:5000/mx@sha256:" + "b" * 64])
    assert deleted == ["sha256:" + "b" * 64]
