"""Issue 5 end to end with the real engine, registry, repository, dnf and PostgreSQL:
a new application version rebuilds exactly the environments that use it, through the smoke
gate; a killed worker's job is finished by another; a broken package keeps the previous version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import select

import rpmrepo
from asci import db
from builder import registry
from builder.models import Environment, EnvironmentVersion
from ci.models import BuildJob
from ci.worker import Worker

from tests.support import rpm_file as rpm

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]

RECIPE = """name: {name}
beamline: TEST
description: ci end-to-end test environment {name}
base: debian12-mate
packages:
{packages}
launchers:
  - name: Viewer
    command: /usr/bin/{first}
checks:
{checks}
"""


@pytest.fixture
def three_environments(pg_settings, recipes_repo, docker_client):
    """Recipes a (mx-process + viewer), b (viewer) and c (imaging-tool) with unique names."""
    suffix = uuid.uuid4().hex[:6]
    names = {key: f"ci-{key}-{suffix}" for key in "abc"}
    apps = {"a": ["asci-demo-viewer", "mx-process"], "b": ["asci-demo-viewer"], "c": ["imaging-tool"]}
    folder = recipes_repo.root / "environments"
    for key, name in names.items():
        (folder / f"{name}.yaml").write_text(RECIPE.format(
            name=name, first=apps[key][0], packages="\n".join(f"  - {p}" for p in apps[key]),
            checks="\n".join(f"  - /usr/bin/{p} --version" for p in apps[key])))
    recipes_repo.commit("three test environments")
    settings = pg_settings.replace(recipes_dir=recipes_repo.root, ci_debounce_s=1, ci_poll_s=0.2, ci_retry_base_s=0,
                                   ci_lease_s=6, ci_gate_timeout_s=90)
    yield settings, names
    for name in names.values():
        for tag in registry.list_tags(settings.registry, name):
            registry.delete_manifest(registry.connect(settings), name, tag)
        for image in docker_client.images.list(name=f"{settings.registry}/{name}"):
            docker_client.images.remove(image.id, force=True)


def _versions(settings, name):
    with db.session_scope(settings) as session:
        rows = session.scalars(select(EnvironmentVersion).join(Environment).where(Environment.name == name)
                               .order_by(EnvironmentVersion.id)).all()
        current = session.scalar(select(Environment.current_version).where(Environment.name == name))
        return [(r.version, r.status, {p["name"]: p["version"] for p in r.lock.get("packages", [])}) for r in rows], current


def _work_until_idle(settings, limit_s=600):
    worker = Worker(settings, "e2e-worker", echo=lambda line: None)
    deadline = time.monotonic() + limit_s
    idle_rounds = 0
    while time.monotonic() < deadline and idle_rounds < 8:
        job = worker.tick()
        idle_rounds = 0 if job is not None else idle_rounds + 1
        if job is None:
            time.sleep(0.3)
    with db.session_scope(settings) as session:
        pending = session.scalars(select(BuildJob).where(BuildJob.state.in_(("queued", "running")))).all()
        assert not pending, f"jobs still pending after {limit_s} s: {[(j.environment, j.state) for j in pending]}"


def test_a_new_application_version_rebuilds_exactly_the_environments_using_it(three_environments, fixture_rpms):
    settings, names = three_environments
    rpmrepo.publish(settings, [rpm(fixture_rpms, n, v) for n, v in
                               (("mx-lib", "2.0"), ("mx-process", "1.0"), ("asci-demo-viewer", "1.0"),
                                ("imaging-tool", "3.2"))])
    _work_until_idle(settings)  # first builds of the three new recipes
    before = {key: _versions(settings, name) for key, name in names.items()}
    for key, (versions, current) in before.items():
        assert [status for _, status, _ in versions] == ["succeeded"], key
        assert current == versions[0][0]

    started = time.monotonic()
    rpmrepo.publish(settings, [rpm(fixture_rpms, "asci-demo-viewer", "1.1")])
    _work_until_idle(settings)
    elapsed = time.monotonic() - started
    after = {key: _versions(settings, name) for key, name in names.items()}
    for key in "ab":
        versions, current = after[key]
        assert len(versions) == 2 and versions[1][1] == "succeeded", key
        assert versions[1][2]["asci-demo-viewer"] == "1.1" and current == versions[1][0], key
        assert registry.tag_exists(settings.registry, names[key], versions[1][0])
        latest = registry.manifest_digest(settings.registry, names[key], "latest")
        assert latest == registry.manifest_digest(settings.registry, names[key], versions[1][0])
    assert after["c"] == before["c"], "an environment not using the viewer was rebuilt"
    assert elapsed < 600


def test_a_killed_worker_s_job_is_taken_up_again_and_completes(three_environments, fixture_rpms):
    settings, names = three_environments
    rpmrepo.publish(settings, [rpm(fixture_rpms, "asci-demo-viewer", "1.0")])
    with db.session_scope(settings) as session:
        from ci import queue

        job_id = queue.enqueue(session, names["b"], "kill test").id
    environment = dict(os.environ, ASCI_DATA_DIR=str(settings.data_dir), ASCI_DATABASE_URL=settings.database_url,
                       ASCI_RECIPES_DIR=str(settings.recipes_dir), ASCI_CI_LEASE_S="6", ASCI_CI_POLL_S="0.2",
                       ASCI_CI_RETRY_BASE_S="0", ASCI_CI_DEBOUNCE_S="30")
    victim = subprocess.Popen([sys.executable, "-m", "asci", "worker", "--id", "victim"], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with db.session_scope(settings) as session:
                job = session.get(BuildJob, job_id)
                if job.state == "running" and job.lease_owner == "victim":
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the first worker never started the job")
        time.sleep(1.0)  # in the middle of the build
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    rescuer = Worker(settings, "rescuer", echo=lambda line: None)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rescuer.watch()  # reaps the dead worker's lease once it expires
        claimed = rescuer.claim()
        if claimed is not None:
            rescuer.run_job(claimed)
            if claimed.id == job_id:
                break
        time.sleep(0.5)
    with db.session_scope(settings) as session:
        job = session.get(BuildJob, job_id)
        assert job.state == "succeeded", job.error
        assert job.attempts == 2 and "expired" not in (job.error or "")
    versions, current = _versions(settings, names["b"])
    assert versions[-1][1] == "succeeded" and current == versions[-1][0]
    assert all(status in ("succeeded", "failed") for _, status, _ in versions)


def test_a_package_that_breaks_its_check_leaves_the_previous_version_current(three_environments, fixture_rpms):
    settings, names = three_environments
    rpmrepo.publish(settings, [rpm(fixture_rpms, n, v) for n, v in
                               (("mx-lib", "2.0"), ("mx-process", "1.0"), ("asci-demo-viewer", "1.0"),
                                ("imaging-tool", "3.2"))])
    _work_until_idle(settings)
    good, good_current = _versions(settings, names["b"])
    rpmrepo.publish(settings, [fixture_rpms / "broken" / "asci-demo-viewer-1.2-1.noarch.rpm"])
    _work_until_idle(settings)
    versions, current = _versions(settings, names["b"])
    assert current == good_current
    assert versions[-1][1] == "failed" and versions[-1][2]["asci-demo-viewer"] == "1.2"
    with db.session_scope(settings) as session:
        job = session.scalars(select(BuildJob).where(BuildJob.environment == names["b"])
                              .order_by(BuildJob.id.desc())).first()
        assert job.state == "failed" and "asci-demo-viewer --version" in job.error
    latest = registry.manifest_digest(settings.registry, names["b"], "latest")
    assert latest == registry.manifest_digest(settings.registry, names["b"], good_current)
