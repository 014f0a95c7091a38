"""``asci serve`` runs the whole platform: every part answers and beats, a crashed part is restarted,
SIGTERM stops them all (websockify included)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from asci.config import Settings
from asci.db import session_scope
from asci.heartbeats import Heartbeat
from tests.support import free_port

pytestmark = pytest.mark.integration
ALL_PARTS = {"web", "websockify", "worker", "reconcile", "cull"}


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _beats(settings) -> list[tuple[str, str, str, int]]:
    with session_scope(settings) as db:
        return [(r.part, r.instance, r.state, r.restarts) for r in db.scalars(select(Heartbeat).order_by(Heartbeat.id))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:  # reaped between the two looks
        return False


@pytest.fixture
def served(tmp_path):
    port, ws_port = free_port(18000, 18500), free_port(18500, 19000)
    settings = Settings(data_dir=tmp_path / "data", web_port=port, websockify_port=ws_port,
                        reconcile_interval_s=1, cull_interval_s=1, ci_poll_s=0.5)
    environment = dict(os.environ, **settings.to_environ())
    subprocess.run([sys.executable, "-m", "asci", "db", "upgrade"], env=environment, check=True, capture_output=True)
    process = subprocess.Popen([sys.executable, "-m", "asci", "serve"], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(url), 60, "the web part to answer")
        yield settings, url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        print(process.stdout.read())


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_every_part_runs_beats_and_stops_with_sigterm(served):
    settings, url, process = served
    running = _wait(lambda: {part for part, _, state, _ in _beats(settings) if state == "running"} >= ALL_PARTS
                    and _beats(settings), 60, "a heartbeat from every part")
    pids = {part: int(instance.rsplit(":", 1)[1]) for part, instance, _, _ in running}
    assert all(_alive(pid) for pid in pids.values())
    with socket.create_connection(("127.0.0.1", settings.websockify_port), timeout=5):
        pass
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not any(_alive(pid) for pid in pids.values()), "a part outlived asci serve"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", settings.websockify_port), timeout=2)
    states = {part: state for part, _, state, _ in _beats(settings)}
    assert {states[part] for part in ALL_PARTS} == {"stopped"}


def test_a_part_that_dies_is_restarted_and_the_crash_recorded(served):
    settings, url, process = served
    first = _wait(lambda: next((b for b in _beats(settings) if b[0] == "worker" and b[2] == "running"), None), 60,
                  "the worker's heartbeat")
    os.kill(int(first[1].rsplit(":", 1)[1]), signal.SIGKILL)
    crashed = _wait(lambda: next((b for b in _beats(settings) if b[1] == first[1] and b[2] == "crashed"), None), 30,
                    "the crash to be recorded")
    assert crashed[0] == "worker"
    again = _wait(lambda: next((b for b in _beats(settings) if b[0] == "worker" and b[1] != first[1]
                                and b[2] == "running"), None), 60, "the restarted worker")
    assert again[3] == 1  # one restart
    assert process.poll() is None and _answers(url)  # the rest kept running


def test_only_runs_a_subset(tmp_path):
    port = free_port(18000, 18500)
    settings = Settings(data_dir=tmp_path / "data", web_port=port, websockify_port=free_port(18500, 19000))
    environment = dict(os.environ, **settings.to_environ())
    subprocess.run([sys.executable, "-m", "asci", "db", "upgrade"], env=environment, check=True, capture_output=True)
    refused = subprocess.run([sys.executable, "-m", "asci", "serve", "--only", "web,teapot"], env=environment,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown part(s) teapot" in refused.stderr
    process = subprocess.Popen([sys.executable, "-m", "asci", "serve", "--only", "web"], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}"), 60, "the web part")
        time.sleep(1)
        assert {part for part, *_ in _beats(settings)} == {"web"}
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_healthz_says_ok_to_anyone_and_details_to_monitoring(served):
    settings, url, _ = served
    environment = dict(os.environ, **settings.to_environ())
    subprocess.run([sys.executable, "-m", "asci", "user", "add", "prometheus", "--password", "long enough"],
                   env=environment, check=True, capture_output=True)
    token = subprocess.run([sys.executable, "-m", "asci", "user", "token", "prometheus", "--scope", "metrics"],
                           env=environment, check=True, capture_output=True, text=True).stdout.strip()
    anonymous = requests.get(url + "/healthz", timeout=10)
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    response = requests.get(url + "/healthz", timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"]["ok"] is True
    assert body["checks"]["docker"]["hosts"]["unix:///var/run/docker.sock"]["ok"] is True


def test_healthz_fails_when_the_database_is_unreachable(tmp_path):
    from web import create_app

    app = create_app(Settings(data_dir=tmp_path, database_url="postgresql://x:y@127.0.0.1:1/none"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json == {"status": "failing"}
