"""Layered environments on a registry of the test's own (behind the authenticating proxy):
per-package layers whose digests survive a one-package release, the layout recorded and reused,
``reproduce --push`` to ``VERSION-rN`` with the original's layer digests, and ``asci registry gc``
deleting a never-promoted version while an old promoted one still launches."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

import rpmrepo
from asci.cli import cli
from asci.cli_context import AsciContext
from asci.db import session_scope
from builder import NotLaunchable, launchable_version, registry, versions
from builder.build import build_environment
from builder.models import VersionStatus
from tests.support import TEST_LABEL, recipe_text

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

V10 = ["asci-demo-viewer-1.0-1.noarch.rpm", "mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm"]


def invoke(settings, *args: str) -> str:
    ctx = AsciContext()
    ctx._settings = settings
    result = CliRunner(mix_stderr=False).invoke(cli, list(args), obj=ctx, catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.output


def manifest(settings, name: str, reference: str) -> dict:
    return json.loads(registry.get_manifest(settings.registry, name, reference)[0])


def run(client, image: str, command: str) -> str:
    return client.containers.run(image, entrypoint=["/bin/sh", "-c"], command=[command], remove=True,
                                 network_mode="none", labels={TEST_LABEL: "builder"}).decode().strip()


def test_layers_by_package_reproduce_push_and_gc(settings, recipes_repo, fixture_rpms, docker_client, base_image,
                                                private_registry, env_name):
    name = env_name("layers")
    recipes_repo.write(name, recipe_text(name, ["mx-process", "asci-demo-viewer"],
                                         checks=["/usr/bin/asci-demo-viewer --version"]))
    settings = private_registry.settings(settings.replace(recipes_dir=recipes_repo.root,
                                                          builder_own_layer_min_bytes=1))
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])
    log: list[str] = []

    first = build_environment(settings, name, log=log.append, client=docker_client, promote=True)

    groups = first.layers["groups"]
    assert {tuple(g["packages"]) for g in groups} == {("asci-demo-viewer",), ("mx-lib",), ("mx-process",)}
    base_layers = len(docker_client.images.get(base_image).attrs["RootFS"]["Layers"])
    pushed = manifest(settings, name, first.version)
    assert len(pushed["layers"]) == base_layers + len(groups) + 1  # base, one per package, meta
    assert [layer["digest"] for layer in pushed["layers"][base_layers:-1]] == [g["digest"] for g in groups]
    assert any(line.startswith("pushed ") and " of " in line and "MiB" in line for line in log)  # progress
    assert any("holds the same" in line for line in log)  # the pushed image compared with the verified one
    assert run(docker_client, first.pull_reference, "rpm -q asci-demo-viewer mx-lib && asci-demo-viewer --version") \
        == "asci-demo-viewer-1.0-1.noarch\nmx-lib-2.0-1.noarch\nasci-demo-viewer 1.0-1"
    assert registry.manifest_digest(settings.registry, "asci/base-debian12-mate", base_image.split(":")[1])

    # One package changes: the others' layers keep their digests, the changed one goes to the top.
    rpmrepo.publish(settings, [fixture_rpms / "asci-demo-viewer-1.1-1.noarch.rpm"])
    second = build_environment(settings, name, log=lambda line: None, client=docker_client)
    before = {g["id"]: g for g in groups}
    after = {g["id"]: g for g in second.layers["groups"]}
    assert after["pkg:mx-lib"]["digest"] == before["pkg:mx-lib"]["digest"]
    assert after["pkg:mx-process"]["digest"] == before["pkg:mx-process"]["digest"]
    assert after["pkg:asci-demo-viewer"]["digest"] != before["pkg:asci-demo-viewer"]["digest"]
    assert second.layers["groups"][-1]["id"] == "pkg:asci-demo-viewer" and second.layers["reused"] == 2
    # The old layer of the changed package stays in place, shadowed: a node holding the first version
    # downloads only the new layer and meta (its layer store is chained).
    assert [(layer["id"], layer["dead"]) for layer in second.layers["stack"]] == [
        (g["id"], g["id"] == "pkg:asci-demo-viewer") for g in groups] + [("pkg:asci-demo-viewer", False)]
    assert second.layers["pull_bytes"] == second.layers["groups"][-1]["size"] + second.layers["meta"]["size"]
    assert len(manifest(settings, name, second.version)["layers"]) == base_layers + len(groups) + 2
    shown = invoke(settings, "env", "show", name, second.version)
    assert f"layers        {len(groups) + 1} above the base + meta (1 shadowed" in shown
    assert "  pkg:mx-lib " in shown
    assert second.layers["uploaded_bytes"] < 64 * 1024  # the changed package's layer, meta and config
    assert run(docker_client, second.pull_reference, "asci-demo-viewer --version") == "asci-demo-viewer 1.1-1"

    # Reproduce the first version to a tag: same package set, every package layer with the original digest.
    report = invoke(settings, "env", "reproduce", name, first.version, "--push")
    assert f"pushed as {settings.registry}/{name}:{first.version}-r1@sha256:" in report
    assert "package layers with the original's digest: 3 of 3" in report
    with session_scope(settings) as db:
        (repro,) = versions.get_version(db, name, first.version).reproductions
        assert (repro.tag, repro.same_packages, repro.layers_same, repro.layers_total) == (
            f"{first.version}-r1", True, 3, 3)
    assert registry.tag_exists(settings.registry, name, f"{first.version}-r1")

    # gc: the second version was never promoted; once older than the retention it goes, the first stays.
    invoke(settings, "registry", "gc", "--dry-run", "--keep-days", "0")
    assert registry.manifest_digest(settings.registry, name, second.version) == second.image_digest
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    from builder import registry_gc

    protected = {(name, "not-this-one")}
    storage_before = private_registry.storage_bytes()
    result = registry_gc(settings, protected, log=lambda line: None, now=later)
    assert [(d.environment, d.version) for d in result.deleted] == [(name, second.version)]
    assert result.blobs_deleted >= 1 and private_registry.storage_bytes() < storage_before
    assert registry.manifest_digest(settings.registry, name, second.version) is None
    assert registry.manifest_digest(settings.registry, name, first.version) == first.image_digest
    with session_scope(settings) as db:
        with pytest.raises(NotLaunchable):
            launchable_version(db, name, second.version)
        assert launchable_version(db, name, first.version).image_digest == first.image_digest
    # The promoted old version still launches from a node that does not hold it.
    for reference in (first.pull_reference, first.image_reference, f"{settings.registry}/{name}:{first.version}-r1"):
        try:
            docker_client.images.remove(reference, force=True)
        except Exception:  # noqa: BLE001 - not held locally
            pass
    docker_client.images.pull(first.pull_reference)
    assert run(docker_client, first.pull_reference, "asci-demo-viewer --version") == "asci-demo-viewer 1.0-1"
    with session_scope(settings) as db:
        row = versions.get_version(db, name, second.version)
        assert row.deleted_at is not None and row.status == VersionStatus.SUCCEEDED
