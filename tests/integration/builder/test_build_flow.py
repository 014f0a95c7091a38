"""The whole life of an environment on the real engine, registry, repository and dnf:
build → push → pull by digest → run; publish 1.1 → build → diff → promote; reproduce the first."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

import rpmrepo
from asci.cli import cli
from asci.cli_context import AsciContext
from asci.db import session_scope
from builder import registry, versions
from builder.build import build_environment
from builder.models import VersionStatus
from builder.reproduce import reproduce
from tests.support import TEST_LABEL
from tests.support import images_named, recipe_text

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

V10 = ["asci-demo-viewer-1.0-1.noarch.rpm", "mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm"]


def run(client, image: str, command: str) -> str:
    out = client.containers.run(image, entrypoint=["/bin/sh", "-c"], command=[command], remove=True,
                                network_mode="none", labels={TEST_LABEL: "builder"}, user="1000:1000")
    return out.decode().strip()


def invoke(settings, *args: str) -> str:
    ctx = AsciContext()
    ctx._settings = settings
    result = CliRunner(mix_stderr=False).invoke(cli, list(args), obj=ctx, catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.output


def test_build_push_pull_run_upgrade_diff_reproduce(settings, recipes_repo, fixture_rpms, docker_client,
                                                     base_image, env_name):
    name = env_name("mx")
    recipes_repo.write(name, recipe_text(name, ["mx-process", "asci-demo-viewer"],
                                         checks=["/usr/bin/asci-demo-viewer --version"]))
    settings = settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])
    log: list[str] = []

    first = build_environment(settings, name, log=log.append, client=docker_client, promote=True)

    today = dt.datetime.now(dt.timezone.utc).strftime("%Y.%m.%d")
    assert first.status == VersionStatus.SUCCEEDED and first.version == f"{today}.1"
    assert first.image_reference == f"{settings.registry}/{name}:{first.version}"
    assert first.image_digest.startswith("sha256:")
    assert {p["nevra"] for p in first.lock["packages"]} == {
        "asci-demo-viewer-1.0-1.noarch", "mx-lib-1:2.0-1.noarch", "mx-process-1.0-1.noarch"}  # mx-lib: a dependency
    assert all(len(p["sha256"]) == 64 for p in first.lock["packages"])
    assert first.lock["base"]["tag"] == base_image and first.lock["recipe"]["commit"] == first.recipe_commit
    assert {e["name"] for e in first.sbom if e["type"] == "rpm"} == {"asci-demo-viewer", "mx-lib", "mx-process"}
    assert any(e["type"] == "deb" and e["name"] == "tigervnc-standalone-server" for e in first.sbom)
    assert "Successfully built" in first.build_log and "pushed" in first.build_log
    assert any("Successfully tagged" in line for line in log)
    assert recipes_repo.tags() == [f"{name}/{first.version}"]
    assert registry.manifest_digest(settings.registry, name, first.version) == first.image_digest
    assert registry.manifest_digest(settings.registry, name, "latest") == first.image_digest
    labels = docker_client.images.get(first.image_reference).labels
    assert labels["org.opencontainers.image.version"] == first.version
    assert labels["org.opencontainers.image.revision"] == first.recipe_commit
    assert labels["asci.environment"] == name and labels["asci.lock-digest"] == first.lock_digest
    assert labels["org.opencontainers.image.source"].endswith(f"#environments/{name}.yaml")

    # Remove it locally, pull it by digest, run it and find the application.
    docker_client.images.remove(first.image_reference)
    assert not images_named(docker_client, name)
    docker_client.images.pull(first.pull_reference)
    assert run(docker_client, first.pull_reference, "rpm -q asci-demo-viewer mx-lib") == \
        "asci-demo-viewer-1.0-1.noarch\nmx-lib-2.0-1.noarch"
    assert run(docker_client, first.pull_reference, "asci-demo-viewer --version") == "asci-demo-viewer 1.0-1"
    assert run(docker_client, first.pull_reference, "echo $TEST_GREETING; ls /usr/share/asci/desktop; ls /etc/xdg/menus/applications-merged; "
               "ls /usr/share/desktop-directories | grep x-asci") == \
        "hello world\nasci-about-this-environment.desktop\nasci-demo-viewer.desktop\nx-asci-test.menu\nx-asci-test.directory"
    import yaml

    from builder.citation import persistent_id

    cited = yaml.safe_load(run(docker_client, first.pull_reference, "cat /etc/asci/CITATION.cff"))
    assert cited["version"] == first.version and cited["cff-version"] == "1.2.0"
    assert cited["identifiers"][0]["value"] == persistent_id(name, first.version, first.lock_digest)
    about = run(docker_client, first.pull_reference, "cat /etc/asci/ABOUT.txt")
    assert persistent_id(name, first.version, first.lock_digest) in about and "mx-lib-1:2.0-1.noarch" in about

    # Version 1.1 of the application is published: a new build picks it up; latest stays until promoted.
    rpmrepo.publish(settings, [fixture_rpms / "asci-demo-viewer-1.1-1.noarch.rpm"])
    second = build_environment(settings, name, log=lambda line: None, client=docker_client)
    assert second.version == f"{today}.2" and second.status == VersionStatus.SUCCEEDED
    assert registry.manifest_digest(settings.registry, name, "latest") == first.image_digest
    assert run(docker_client, second.image_reference, "asci-demo-viewer --version") == "asci-demo-viewer 1.1-1"

    diff = invoke(settings, "env", "diff", name, first.version, second.version)
    assert "upgraded   asci-demo-viewer.noarch 1.0-1 -> 1.1-1" in diff
    assert "mx-lib" not in diff
    assert "downgraded" in invoke(settings, "env", "diff", name, second.version, first.version)

    as_of_today = dt.date.today().isoformat()
    assert f"version       {first.version}" in invoke(settings, "env", "show", name, "--as-of", as_of_today)
    invoke(settings, "env", "promote", name, second.version)
    assert registry.manifest_digest(settings.registry, name, "latest") == second.image_digest
    assert f"version       {second.version}" in invoke(settings, "env", "show", name, "--as-of", as_of_today)
    listing = invoke(settings, "env", "versions", name)
    assert f"  {first.version}" in listing and f"* {second.version}" in listing

    # Reproduce the first version: the old package set, although 1.1 is the newest in the repository
    # and 1.0 has since been retracted (new builds can no longer resolve it; the "all" view keeps it).
    rpmrepo.retract(settings, "asci-demo-viewer-1.0-1.noarch")
    result = reproduce(settings, name, first.version, log=lambda line: None, client=docker_client)
    assert result.packages == sorted(p["nevra"] for p in first.lock["packages"])
    assert "asci-demo-viewer-1.0-1.noarch" in result.packages
    assert result.sha256_checked == 3 and result.dockerfile_identical and result.base_image_identical
    assert not [t for t in images_named(docker_client, name) if t.startswith("asci-reproduce/")]
    report = invoke(settings, "env", "reproduce", name, first.version)
    assert "same package set: 3 NEVRAs, 3 sha256 verified" in report and "  asci-demo-viewer-1.0-1.noarch" in report
    shown = json.loads(invoke(settings, "env", "show", name, first.version, "--json"))
    assert shown["image_digest"] == first.image_digest and shown["lock"] == first.lock
    with session_scope(settings) as session:
        assert [v.version for v in versions.list_versions(session, name)] == [first.version, second.version]
        assert versions.find_environment(session, name).current_version == second.version
