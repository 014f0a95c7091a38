"""Bad recipes and failed builds: a clear error, and no image, registry tag or git tag left behind."""

from __future__ import annotations

import datetime as dt
import io
import tarfile

import pytest
from sqlalchemy import func, select

import rpmrepo
from asci.cli import main
from asci.db import session_scope
from builder import registry
from builder.build import build_environment
from builder.errors import LockError, RecipeError, VerifyError
from builder.models import Environment, EnvironmentVersion, VersionStatus
from tests.support import images_named, recipe_text, shared_push

pytestmark = [pytest.mark.integration, pytest.mark.docker]

V10 = ["asci-demo-viewer-1.0-1.noarch.rpm", "mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm"]


def nothing_left(settings, client, recipes_repo, name: str) -> None:
    assert not images_named(client, name)
    assert registry.list_tags(settings.registry, name) == []
    assert recipes_repo.tags() == []


def cli(monkeypatch, capsys, settings, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("ASCI_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ASCI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ASCI_RECIPES_DIR", str(settings.recipes_dir))
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err


BAD = {
    "unknown package": (["mx-process", "no-such-package"], "", LockError,
                        "unknown package(s) in repository 'beamline': no-such-package"),
    "injection in a package name": (["'mx-process; curl http://127.0.0.1/x | sh'"], "", RecipeError,
                                    ":6: packages[0].name: invalid value"),
    "injection in a launcher": (["mx-process"], "", RecipeError, ":11: launchers[0].command: invalid value"),
    "malformed YAML": (["mx-process"], "checks: [unterminated\n", RecipeError, "malformed YAML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_recipes_change_nothing(case, db_settings, recipes_repo, fixture_rpms, docker_client, base_image,
                                    env_name, monkeypatch, capsys):
    packages, extra, error, message = BAD[case]
    name = env_name("bad")
    text = recipe_text(name, packages, extra=extra)
    if case == "injection in a launcher":
        text = text.replace("command: /usr/bin/asci-demo-viewer", 'command: /usr/bin/asci-demo-viewer"; rm -rf ~; "')
    recipes_repo.write(name, text)
    settings = db_settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])

    with pytest.raises(error) as info:
        build_environment(settings, name, log=lambda line: None, client=docker_client)
    assert message in str(info.value)
    if error is RecipeError:
        assert f"{name}.yaml" in str(info.value)
    code, err = cli(monkeypatch, capsys, settings, "env", "build", name)
    last = err.strip().splitlines()[-1]  # progress lines come first on stderr; the error is one line
    assert code != 0 and last.startswith("error: ") and message in last and "Traceback" not in err

    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Environment)) == 0
        assert session.scalar(select(func.count()).select_from(EnvironmentVersion)) == 0
    nothing_left(settings, docker_client, recipes_repo, name)


@pytest.mark.slow
def test_a_failing_check_fails_the_build_and_tags_nothing(settings, recipes_repo, fixture_rpms, docker_client,
                                                          base_image, env_name):
    name = env_name("chk")
    recipes_repo.write(name, recipe_text(name, ["mx-process"], checks=["/usr/bin/mx-process --version",
                                                                        "/bin/false"]))
    settings = settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])
    log: list[str] = []

    with pytest.raises(VerifyError, match="check '/bin/false' failed with exit status 1"):
        build_environment(settings, name, log=log.append, client=docker_client, promote=True)

    with session_scope(settings) as session:
        (row,) = session.scalars(select(EnvironmentVersion))
        assert row.status == VersionStatus.FAILED and "/bin/false" in row.error and row.finished_at is not None
        assert "Successfully built" in row.build_log and row.image_digest == ""
        assert row.environment.current_version is None
        assert row.lock["packages"] and row.dockerfile.startswith("# Rendered by builder.render")
    nothing_left(settings, docker_client, recipes_repo, name)


def _push_placeholder(client, repository: str, tag: str) -> None:
    """Push a one-file image to ``repository:tag`` (someone else's version already in the registry)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in (("Dockerfile", b"FROM scratch\nCOPY x /x\n"), ("x", b"placeholder\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=f"{repository}:{tag}", network_mode="none")
    shared_push(client, repository, tag)  # through the push endpoint, with the builder's credentials
    client.images.remove(f"{repository}:{tag}")


def test_a_pushed_version_is_never_overwritten(settings, recipes_repo, fixture_rpms, docker_client, base_image,
                                               env_name):
    """A tag this database never recorded (another deployment's push) is skipped, never replaced."""
    name = env_name("imm")
    recipes_repo.write(name, recipe_text(name, ["mx-process"]))
    settings = settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])
    today = f"{dt.datetime.now(dt.timezone.utc):%Y.%m.%d}"
    _push_placeholder(docker_client, f"{settings.registry}/{name}", f"{today}.1")
    before = registry.manifest_digest(settings.registry, name, f"{today}.1")
    assert before, "the placeholder was not pushed"

    row = build_environment(settings, name, log=lambda line: None, client=docker_client)

    assert row.version == f"{today}.2"
    assert registry.manifest_digest(settings.registry, name, f"{today}.1") == before
    assert registry.manifest_digest(settings.registry, name, f"{today}.2") == row.image_digest != before


def test_the_build_checks_every_rpm_against_the_locked_sha256(settings, recipes_repo, fixture_rpms, docker_client,
                                                              base_image, env_name):
    """A lock whose sha256 does not match the repository's file fails inside the build (error stream)."""
    from builder import build
    from builder.errors import DockerError

    name = env_name("sha")
    recipes_repo.write(name, recipe_text(name, ["mx-process"]))
    settings = settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in V10])
    prepared = build.prepare(settings, name, docker_client, log=lambda line: None)
    prepared.lock["packages"][0]["sha256"] = "0" * 64
    context = build.render_version(settings, prepared.recipe, prepared.lock, "2000.01.01.1",
                                   dt.datetime.now(dt.timezone.utc))
    tag = f"{settings.registry}/{name}:2000.01.01.1"
    log: list[str] = []

    with pytest.raises(DockerError, match="returned a non-zero code"):
        build.build_from_context(settings, docker_client, context, "beamline", tag, log.append)

    assert any("FAILED" in line for line in log)  # sha256sum's report, streamed to the log
    assert not images_named(docker_client, name)
