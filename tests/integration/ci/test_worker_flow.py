"""The worker's decisions with the builder and gate replaced by fakes: promote only after the
gate, keep the previous version current on a gate failure, retry engine errors, notify."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from asci import accounts, db
from builder.errors import DockerError
from builder.models import Environment, EnvironmentVersion, VersionStatus
from ci import queue
from ci.errors import GateFailed
from ci.worker import Worker


class Hooks:
    """A webhook receiver on 127.0.0.1 recording every JSON body."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hooks():
    receiver = Hooks()
    yield receiver
    receiver.server.shutdown()


class FakeBuilder:
    """Records a succeeded, pushed-looking version the way builder.build_environment does."""

    def __init__(self, settings, fail_with=None):
        self.settings, self.fail_with, self.calls = settings, fail_with, 0

    def __call__(self, settings, name, log=print, promote=False):
        self.calls += 1
        assert promote is False, "the worker must not promote before the gate"
        if self.fail_with:
            raise self.fail_with
        with db.session_scope(settings) as session:
            env = session.scalar(select(Environment).where(Environment.name == name))
            if env is None:
                env = Environment(name=name, beamline="T", description="", base_image="b")
                session.add(env)
                session.flush()
            row = EnvironmentVersion(environment=env, version=f"2026.11.25.{self.calls}", status=VersionStatus.SUCCEEDED,
                                     image_reference=f"127.0.0.1:5000/{name}:2026.11.25.{self.calls}",
                                     image_digest="sha256:" + "ab" * 32)
            session.add(row)
            session.flush()
            return row


def _promote(settings, name, version):
    with db.session_scope(settings) as session:
        env = session.scalar(select(Environment).where(Environment.name == name))
        env.current_version = version


def _worker(settings, builder, gate, echo=lambda line: None):
    return Worker(settings, "test-worker", echo=echo, build=builder, gate=gate, promote=_promote)


def _queue(settings, environment="imaging"):
    with db.session_scope(settings) as session:
        queue.enqueue(session, environment, "test")


def _current(settings, name="imaging"):
    with db.session_scope(settings) as session:
        return session.scalar(select(Environment.current_version).where(Environment.name == name))


def test_a_gated_build_becomes_current_and_is_notified(ci_settings, hooks):
    settings = ci_settings.replace(ci_webhook_urls=hooks.url)
    gated = []
    _queue(settings)
    job = _worker(settings, FakeBuilder(settings), lambda s, image, checks, env, log: gated.append((image, checks))).tick()
    assert job.state == "succeeded" and job.version == "2026.11.25.1"
    assert gated == [("127.0.0.1:5000/imaging@sha256:" + "ab" * 32, ["/usr/bin/imaging-tool --version"])]
    assert _current(settings) == "2026.11.25.1"
    assert hooks.received[0]["event"] == "build.succeeded"
    assert hooks.received[0]["environment"] == "imaging" and hooks.received[0]["version"] == "2026.11.25.1"


def test_a_gate_failure_keeps_the_previous_version_current(ci_settings, hooks):
    settings = ci_settings.replace(ci_webhook_urls=hooks.url)
    builder = FakeBuilder(settings)
    _queue(settings)
    _worker(settings, builder, lambda *a, **k: None).tick()
    assert _current(settings) == "2026.11.25.1"

    def broken_gate(settings, image, checks, environment, log):
        raise GateFailed("check `/usr/bin/imaging-tool --version` exited 127: not found")

    _queue(settings)
    job = _worker(settings, builder, broken_gate).tick()
    assert job.state == "failed" and "exited 127" in job.error and job.attempts == 1  # not retried
    assert _current(settings) == "2026.11.25.1"
    with db.session_scope(settings) as session:
        second = session.scalar(select(EnvironmentVersion).where(EnvironmentVersion.version == "2026.11.25.2"))
        assert second.status == VersionStatus.FAILED and "smoke test failed" in second.error
    assert [h["event"] for h in hooks.received] == ["build.succeeded", "build.failed"]


def test_engine_errors_are_retried_and_recipe_errors_are_not(ci_settings):
    _queue(ci_settings)
    worker = _worker(ci_settings, FakeBuilder(ci_settings, DockerError("daemon went away")), None)
    job = worker.run_job(worker.claim())  # claim + run without watching for changes
    assert job.state == "queued" and job.attempts == 1 and job.error == "daemon went away"
    from builder.errors import RecipeError

    worker = _worker(ci_settings, FakeBuilder(ci_settings, RecipeError("imaging.yaml:3: packages: bad")), None)
    job = worker.run_job(worker.claim())
    assert job.state == "failed" and job.attempts == 2


def test_build_jobs_api_is_for_administrators(ci_settings):
    from web import create_app

    with db.session_scope(ci_settings) as session:
        root = accounts.create_user(session, "root1", "long enough", is_admin=True)
        admin_token = accounts.issue_token(session, root, scopes="admin")
        user_token = accounts.issue_token(session, accounts.create_user(session, "alice", "long enough"))
    client = create_app(ci_settings).test_client()
    assert client.get("/api/builds").status_code == 401
    assert client.get("/api/builds", headers={"Authorization": f"Bearer {user_token}"}).status_code == 403
    admin = {"Authorization": f"Bearer {admin_token}"}
    created = client.post("/api/builds", json={"environment": "imaging", "reason": "manual"}, headers=admin)
    assert created.status_code == 201 and created.json["state"] == "queued"
    assert client.post("/api/builds", json={"environment": "nope"}, headers=admin).status_code == 404
    assert client.post("/api/builds", data="not json", headers=admin).status_code == 400
    listed = client.get("/api/builds?state=queued", headers=admin).json["builds"]
    assert [b["environment"] for b in listed] == ["imaging"]
    assert client.get(f"/api/builds/{created.json['id']}", headers=admin).json["reasons"] == ["manual"]
    assert client.get("/api/builds/999", headers=admin).status_code == 404
    assert client.get("/api/builds?state=bogus", headers=admin).status_code == 400


def test_a_running_jobs_log_reaches_the_database_as_it_grows(ci_settings, monkeypatch):
    """Administrators follow a build: its log is stored while the job runs, not only at the end."""
    import ci.worker as worker_module

    monkeypatch.setattr(worker_module, "LOG_FLUSH_S", 0.0)
    seen_while_running = []

    def slow_gate(settings, image, checks, environment, log):
        log("smoke test: desktop drawn")
        with db.session_scope(settings) as session:
            job = session.scalar(select(queue.BuildJob).where(queue.BuildJob.environment == environment))
            seen_while_running.append((job.state, job.log))

    _queue(ci_settings)
    job = _worker(ci_settings, FakeBuilder(ci_settings), slow_gate).tick()
    assert job.state == "succeeded"
    [(state, log)] = seen_while_running
    assert state == "running" and "building imaging" in log and "desktop drawn" in log


def test_the_worker_beats_as_a_part(ci_settings):
    from asci.heartbeats import recent

    stop = threading.Event()
    worker = _worker(ci_settings, FakeBuilder(ci_settings), lambda *a, **k: None)
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    try:
        for _ in range(100):
            with db.session_scope(ci_settings) as session:
                beats = [status for status in recent(session) if status.part == "worker"]
            if beats:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert beats and beats[0].state == "running" and not beats[0].silent


def test_a_build_that_changes_nothing_makes_no_version_and_says_so(ci_settings, hooks, monkeypatch, capsys):
    from builder.errors import UpToDate

    settings = ci_settings.replace(ci_webhook_urls=hooks.url)
    builder = FakeBuilder(settings)
    _queue(settings)
    _worker(settings, builder, lambda *a, **k: None).tick()
    assert _current(settings) == "2026.11.25.1"
    hooks.received.clear()

    def unchanged(settings, name, log=print, promote=False):
        log(f"{name} is up to date: 2026.11.25.1 (same packages, base image and recipe; no new version)")
        raise UpToDate(name, "2026.11.25.1")

    gated, echoed = [], []
    _queue(settings)
    job = _worker(settings, unchanged, lambda *a, **k: gated.append(a), echo=echoed.append).tick()
    assert job.state == "unchanged" and job.version == "2026.11.25.1" and job.error == ""
    assert gated == [] and hooks.received == []  # no smoke test, no promotion, nothing to announce
    assert any("imaging is up to date: 2026.11.25.1" in line for line in echoed)
    assert _current(settings) == "2026.11.25.1"
    with db.session_scope(settings) as session:
        assert session.scalars(select(EnvironmentVersion.version)).all() == ["2026.11.25.1"]
        assert "imaging is up to date" in queue.get_job(session, job.id).log

    # asci build run and asci build enqueue --wait print the same sentence
    from click.testing import CliRunner

    from asci.cli import cli
    from asci.cli_context import AsciContext
    import ci.worker

    monkeypatch.setattr(ci.worker.builder, "build_environment", unchanged)
    ctx = AsciContext()
    ctx._settings = settings
    result = CliRunner(mix_stderr=False).invoke(cli, ["build", "run", "imaging"], obj=ctx, catch_exceptions=False)
    assert result.exit_code == 0 and result.output.strip().endswith("imaging is up to date: 2026.11.25.1")
    with db.session_scope(settings) as session:
        last = queue.list_jobs(session, environment="imaging", limit=1)[0].id
    from ci.cli import _wait_for

    _wait_for(settings, last, 5)
    assert f"job {last}: imaging is up to date: 2026.11.25.1" in capsys.readouterr().out
