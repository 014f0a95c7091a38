"""Every part of the main job (``asci serve``) logs JSON lines with one field set: the supervisor on its
stderr, each part (web, websockify, worker, reconcile, cull) in ``<data_dir>/logs/<part>.log``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from asci.config import Settings
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration
PARTS = ("web", "websockify", "worker", "reconcile", "cull")


def _lines(path) -> list[dict]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_part_logs_json_lines_with_one_field_set(tmp_path):
    port, ws_port = free_port(18000, 18500), free_port(18500, 19000)
    settings = Settings(data_dir=tmp_path / "data", web_port=port, websockify_port=ws_port,
                        reconcile_interval_s=1, cull_interval_s=1, ci_poll_s=0.5)
    environment = dict(os.environ, **settings.to_environ())
    subprocess.run([sys.executable, "-m", "asci", "db", "upgrade"], env=environment, check=True, capture_output=True)
    process = subprocess.Popen([sys.executable, "-m", "asci", "serve"], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    logs = settings.data_dir / "logs"
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
                   if _listening(port) else False, 60, "the web part")
        requests.get(f"http://127.0.0.1:{port}/no/such/page", timeout=5)
        wait_until(lambda: all(_lines(logs / f"{part}.log") for part in PARTS), 60, "every part to log")
        wait_until(lambda: any(line["event"] == "reconcile.pass" for line in _lines(logs / "reconcile.log")), 30,
                   "a reconcile pass")
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=30)
    for part in PARTS:
        lines = _lines(logs / f"{part}.log")  # every line parses as JSON
        for line in lines:
            assert {"time", "level", "part", "event", "logger", "message"} <= set(line), line
            assert line["part"] == part, line
    supervisor = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert supervisor and all(line["part"] == "serve" for line in supervisor)
    assert any("started worker" in line["message"] for line in supervisor)
    worker = _lines(logs / "worker.log")
    assert any(line["event"] == "worker.message" and "watching" in line["message"] for line in worker)
    websockify = _lines(logs / "websockify.log")
    assert any("127.0.0.1" in line["message"] for line in websockify), websockify[:5]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
