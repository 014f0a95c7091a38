"""A version survives its registry: ``asci env export`` writes an OCI archive that skopeo reads (the
registry's manifest, byte for byte), ``asci env verify`` checks it, ``asci env import`` restores it into
a platform that lost its manifest and into an empty one (fresh data directory and registry), where it
launches like a session and ``asci env reproduce`` proves the same package set.
Real engine, registries, repository, dnf and skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

import pytest
from click.testing import CliRunner

import rpmrepo
from asci.cli import cli
from asci.cli_context import AsciContext
from asci.db import session_scope
from builder import registry, versions
from builder.archive import ARCHIVE_REPO, verify_archive
from builder.build import build_environment
from builder.errors import ArchiveError
from builder.reproduce import reproduce
from tests.conftest import _sqlite_settings
from tests.support import TEST_LABEL, RecipesRepo, extract_all, recipe_text, require_programs

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

V10 = ["asci-demo-viewer-1.0-1.noarch.rpm", "mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm"]
CHECK = "/usr/bin/asci-demo-viewer --version"


def invoke(settings, *args: str) -> str:
    ctx = AsciContext()
    ctx._settings = settings
    result = CliRunner(mix_stderr=False).invoke(cli, list(args), obj=ctx)
    assert result.exit_code == 0, result.output + result.stderr + repr(result.exception)
    return result.output + result.stderr


def run(client, image: str, command: str) -> str:
    out = client.containers.run(image, entrypoint=["/bin/sh", "-c"], command=[command], remove=True,
                                network_mode="none", labels={TEST_LABEL: "builder"}, user="1000:1000")
    return out.decode().strip()


def _damaged_copy(source, target, member_prefix: str) -> None:
    """A copy of the archive in which one byte of the first member named ``member_prefix…`` is flipped."""
    shutil.copy(source, target)
    with tarfile.open(source) as tar:
        info = next(m for m in tar.getmembers() if m.name.startswith(member_prefix) and m.size)
    with open(target, "r+b") as handle:
        handle.seek(info.offset_data + info.size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_export_verify_and_import_into_this_and_an_empty_platform(settings, recipes_repo, fixture_rpms, docker_client,
                                                                   base_image, env_name, private_registry, tmp_path):
    require_programs("skopeo")
    name = env_name("arc")
    recipes_repo.write(name, recipe_text(name, ["mx-process", "asci-demo-viewer"], checks=[CHECK]))
    settings = settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])
    first = build_environment(settings, name, log=lambda line: None, client=docker_client, promote=True)

    # export: an OCI layout archive holding the registry's manifest byte for byte
    archive = tmp_path / f"{name}.oci.tar"
    out = invoke(settings, "env", "export", name, first.version, "-o", str(archive))
    assert "exported" in out and f"{first.image_digest}" in out
    manifest, _type, digest = registry.get_manifest(settings.registry, name, first.version)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], capture_output=True, check=True)
    assert raw.stdout == manifest and digest == first.image_digest
    inspected = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}"], capture_output=True,
                                          check=True, text=True).stdout)
    assert inspected["Digest"] == first.image_digest
    assert inspected["Labels"]["org.opencontainers.image.version"] == first.version
    unpacked = tmp_path / "layout"
    with tarfile.open(archive) as tar:
        extract_all(tar, unpacked, "data")
        names = set(tar.getnames())
    copied = tmp_path / "copied"  # skopeo reads every blob back (and checks each digest) from the unpacked layout
    subprocess.run(["skopeo", "copy", f"oci:{unpacked}", f"dir:{copied}"], capture_output=True,
                   check=True)
    assert (copied / "manifest.json").read_bytes() == manifest
    assert {"asci/lock.json", "asci/sbom.json", "asci/Dockerfile", "asci/build.log", "asci/recipe.yaml",
            "asci/SHA256SUMS"} <= names
    assert {f"asci/rpms/{p['filename']}" for p in first.lock["packages"]} <= names
    assert json.loads((unpacked / "asci" / "lock.json").read_text()) == first.lock
    assert (unpacked / "asci" / "Dockerfile").read_text() == first.dockerfile

    # verify: every digest and checksum; a flipped byte anywhere is named
    report = invoke(settings, "env", "verify", str(archive))
    assert f"{name} {first.version} verified" in report and "3 RPM files match the lock" in report
    for prefix, complaint in (("asci/rpms/", "the lock says"), ("blobs/sha256/", "content has sha256"),
                              ("asci/recipe.yaml", "SHA256SUMS says")):
        broken = tmp_path / "broken.tar"
        _damaged_copy(archive, broken, prefix)
        with pytest.raises(ArchiveError, match=complaint):
            verify_archive(broken)
    with pytest.raises(ArchiveError, match="not a readable archive"):
        verify_archive(tmp_path / "layout" / "oci-layout")

    # this platform lost the manifest: import puts the same digest back and it launches
    assert registry.delete_manifest(registry.connect(settings), name, first.image_digest)
    assert registry.manifest_digest(settings.registry, name, first.version) is None
    out = invoke(settings, "env", "import", str(archive))
    assert "version record restored" in out
    assert registry.manifest_digest(settings.registry, name, first.version) == first.image_digest
    docker_client.images.remove(first.image_reference, force=True)
    assert run(docker_client, first.pull_reference, "asci-demo-viewer --version") == "asci-demo-viewer 1.0-1"

    # an empty platform: fresh data directory, database, recipes and registry
    empty_recipes = RecipesRepo(tmp_path / "other-recipes")
    other = private_registry.settings(_sqlite_settings(tmp_path / "other")).replace(recipes_dir=empty_recipes.root)
    out = invoke(other, "env", "import", str(archive))
    assert f"imported {name} {first.version}" in out and "version record created" in out and "3 RPMs" in out
    with session_scope(other) as db:
        row = versions.get_version(db, name, first.version)
        assert (row.image_digest, row.lock_digest, row.lock, row.sbom, row.dockerfile, row.build_log) == (
            first.image_digest, first.lock_digest, first.lock, first.sbom, first.dockerfile, first.build_log)
        assert row.created_at == first.created_at and row.recipe_commit == first.recipe_commit
        assert row.became_current_at is not None and row.environment.current_version == first.version
        assert row.image_reference == f"{private_registry.host}/{name}:{first.version}"
        pull = row.pull_reference
        archived = {p.nevra for p in rpmrepo.list_packages(db, ARCHIVE_REPO)}
    assert archived == {"asci-demo-viewer-1.0-1.noarch", "mx-lib-1:2.0-1.noarch", "mx-process-1.0-1.noarch"}
    assert registry.manifest_digest(private_registry.host, name, first.version) == first.image_digest

    # it launches there like a session (the smoke gate) and reproduces to the same package set
    import broker
    from ci.gate import smoke_test

    with session_scope(other) as db:
        broker.register_node(other, db, "local", other.docker_hosts[0])
    gate = smoke_test(other, pull, [CHECK], name, log=lambda line: None)
    assert gate.checks[0]["exit_code"] == 0 and "asci-demo-viewer 1.0-1" in gate.checks[0]["output"]
    result = reproduce(other, name, first.version, log=lambda line: None, client=docker_client)
    assert result.packages == sorted(p["nevra"] for p in first.lock["packages"]) and result.sha256_checked == 3
    assert "same package set: 3 NEVRAs, 3 sha256 verified" in invoke(other, "env", "reproduce", name, first.version)
