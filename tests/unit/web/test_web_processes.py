"""Several web processes behind one port: SO_REUSEPORT sockets and the replicas' start."""

from __future__ import annotations

import socket

import pytest

from asci.config import Settings
from web import server


def test_reuse_port_sockets_share_a_port_and_a_plain_one_is_refused():
    first = server.listening_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = server.listening_socket("127.0.0.1", port, reuse_port=True)
    try:
        assert second.getsockname()[1] == port
        with pytest.raises(OSError):
            server.listening_socket("127.0.0.1", port, reuse_port=False).close()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)  # the kernel hands it to one of them
        client.close()
    finally:
        first.close()
        second.close()


def test_the_first_process_starts_web_processes_minus_one_replicas(monkeypatch, tmp_path):
    started = []

    class FakePopen:
        def __init__(self, command, env, **kwargs):
            started.append((command, env, kwargs))

    monkeypatch.setattr(server.subprocess, "Popen", FakePopen)
    settings = Settings(data_dir=tmp_path, web_processes=3)
    replicas = server.start_replicas(settings, "127.0.0.1", 18080)
    assert len(replicas) == 2 and len(started) == 2
    command, env, kwargs = started[0]
    assert command[-4:] == ["-m", "asci", "part", "web"]
    assert env[server.REPLICA_ENV] == "1" and env["ASCI_WEB_PORT"] == "18080" and env["ASCI_WEB_PROCESSES"] == "3"
    assert env["ASCI_DATA_DIR"] == str(tmp_path) and kwargs["preexec_fn"] is server._die_with_parent
