"""Two real Docker daemons as two nodes, and a desktop image pushed to the local registry."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import docker
import pytest


DOCKERD = "/usr/sbin/dockerd"


@pytest.fixture(scope="module")
def second_daemon(tmp_path_factory):
    """A second dockerd side by side (own data root, exec root, pidfile, socket); ended by its PID."""
    root = tmp_path_factory.mktemp("dockerd2")
    exec_root = f"/tmp/asci-d2-{uuid.uuid4().hex[:6]}"  # short: containerd socket paths are length-limited
    socket_path = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")
    process = subprocess.Popen(
        [DOCKERD, "--data-root", str(root / "data"), "--exec-root", exec_root, "--pidfile", str(root / "docker.pid"),
         "-H", f"unix://{socket_path}", "--bridge=none", "--iptables=false", "--ip6tables=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 60
    while True:
        try:
            docker.DockerClient(base_url=url, timeout=5).ping()
            break
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError((root / "dockerd.log").read_text()[-2000:])
            time.sleep(0.3)
    info = {"url": url, "process": process, "log": root / "dockerd.log"}
    yield info
    if process.poll() is None:
        try:
            client = docker.DockerClient(base_url=url, timeout=30)
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.close()
        except Exception:  # noqa: BLE001
            pass
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    log.close()
    subprocess.run(["umount", f"{exec_root}/netns/default"], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", str(root / "data"), exec_root], check=False)
