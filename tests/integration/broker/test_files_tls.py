"""The engine's file channel over a TLS daemon (a second dockerd on 127.0.0.1 with our CA): the same
checks as the user and the same archive-API streams as on the local engine, through the TLS client."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from broker.backends.docker import DockerBackend
from broker.errors import NotFound
from broker.file_channel import AlreadyExists, PathRefused
from tests.integration.broker.conftest import tls_ref

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def test_files_move_in_and_out_of_a_container_on_a_tls_node(node2, node2_image, pki):
    backend = DockerBackend()
    ref = tls_ref(node2, pki["good"])
    client = backend.client(ref)
    container = client.containers.run(node2_image, entrypoint=["sleep", "300"], user="4242:4242", detach=True,
                                      environment={"HOME": "/tmp/home"}, network_disabled=True, init=True,
                                      labels={"asci.managed": "helper"})
    try:
        assert container.exec_run(["mkdir", "-p", "/tmp/home"], user="4242:4242").exit_code == 0
        channel = backend.file_channel(ref, {"container_id": container.id})
        payload = os.urandom(5 << 20)
        entry = channel.write("in/data.bin", io.BytesIO(payload), len(payload), False)
        assert (entry.type, entry.size) == ("file", len(payload))
        with pytest.raises(AlreadyExists):
            channel.write("in/data.bin", io.BytesIO(b"x"), 1, False)
        inside = container.exec_run(["sh", "-c", "sha256sum /tmp/home/in/data.bin | cut -c1-64; "
                                     "stat -c '%u %a' /tmp/home/in/data.bin"], user="4242:4242").output.decode()
        assert inside.split() == [hashlib.sha256(payload).hexdigest(), "4242", "644"]
        download = channel.read("home", "in/data.bin")
        assert download.size == len(payload) and b"".join(download.chunks) == payload
        assert [e.name for e in channel.listing("home", "in")] == ["data.bin"]
        container.exec_run(["ln", "-s", "/etc", "/tmp/home/etc-link"], user="4242:4242")
        with pytest.raises(PathRefused):
            channel.read("home", "etc-link/passwd")
        channel.delete("in/data.bin")
        with pytest.raises(NotFound):
            channel.stat("home", "in/data.bin")
    finally:
        container.remove(force=True)
        backend.close()
