"""``asci serve`` answers /healthz on loopback: ok or failing for anyone, the state of each service
for administrators and monitoring tokens."""

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.support import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path):
    port, ws_port = free_port(18000, 18500), free_port(18500, 19000)
    environment = dict(os.environ, ASCI_DATA_DIR=str(tmp_path / "data"), ASCI_WEB_PORT=str(port),
                       ASCI_WEBSOCKIFY_PORT=str(ws_port))
    subprocess.run([sys.executable, "-m", "asci", "db", "upgrade"], env=environment, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "asci", "user", "add", "prometheus", "--password", "long enough"],
                   env=environment, check=True, capture_output=True)
    token = subprocess.run([sys.executable, "-m", "asci", "user", "token", "prometheus", "--scope", "metrics"],
                           env=environment, check=True, capture_output=True, text=True).stdout.strip()
    process = subprocess.Popen([sys.executable, "-m", "asci", "serve"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url, ws_port, token
    finally:
        process.terminate()
        process.wait(timeout=10)
    time.sleep(0.5)
    leftovers = [p for p in _cmdlines() if "websockify" in p and str(tmp_path) in p]
    assert leftovers == [], "asci serve left websockify running after SIGTERM"


def _cmdlines() -> list[str]:
    from pathlib import Path

    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines


def test_healthz_reports_database_docker_and_registry(served):
    url, _, token = served
    anonymous = requests.get(url + "/healthz", timeout=10)
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    response = requests.get(url + "/healthz", timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["revision"]
    assert set(body["checks"]) >= {"docker", "registry"}
    assert body["checks"]["docker"]["hosts"]["unix:///var/run/docker.sock"]["ok"] is True
    assert body["checks"]["registry"]["ok"] is True


def test_serve_also_runs_websockify_on_loopback(served):
    import socket

    _, ws_port, _ = served
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", ws_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        pytest.fail("websockify did not listen")
    # a WebSocket upgrade without a token is refused by the token plugin
    try:
        response = requests.get(f"http://127.0.0.1:{ws_port}/websockify",
                                headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                         "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
                                timeout=5)
    except requests.ConnectionError:
        return  # websockify hung up on the token-less upgrade: refused
    assert response.status_code != 101


def test_healthz_fails_when_the_database_is_unreachable(tmp_path):
    from web import create_app
    from asci.config import Settings

    app = create_app(Settings(data_dir=tmp_path, database_url="postgresql://x:y@127.0.0.1:1/none"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json == {"status": "failing"}  # nobody can be recognised without the database: no details
