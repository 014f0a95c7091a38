"""The registry's front: anonymous pulls and reads, pushes and deletes only with the builder's
credentials, writes refused while garbage collection pauses them."""

from __future__ import annotations

import hashlib

import pytest
import requests

from builder import docker_engine, registry
from builder.errors import DockerError

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def tiny_image(client, repository: str) -> str:
    """A one-file image made with ``docker import`` (quick to push, unlike a desktop base)."""
    import io
    import tarfile
    import uuid

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        content = f"{uuid.uuid4()}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    client.api.import_image_from_data(data.getvalue(), repository=repository, tag="v1")
    return f"{repository}:v1"


def test_push_and_delete_need_credentials_pull_is_anonymous(private_registry, docker_client):
    host = private_registry.host
    anonymous, builder = registry.Registry(host), registry.Registry(host, private_registry.auth)
    wrong = registry.Registry(host, ("asci-builder", "not-the-password"))
    data = b"a blob of the auth test\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    for who in (anonymous, wrong):  # writes without (the right) credentials are refused
        with pytest.raises(DockerError, match="401"):
            registry.upload_blob(who, "auth-test", digest, data, len(data))
    assert requests.post(f"http://{host}/v2/auth-test/blobs/uploads/", timeout=5).status_code == 401
    registry.upload_blob(builder, "auth-test", digest, data, len(data))
    assert registry.blob_exists(anonymous, "auth-test", digest)  # anonymous reads

    # Docker pushes a real image with the credentials (to the push endpoint, which challenges for them),
    # is refused without them on either endpoint; anyone pulls it anonymously from the read endpoint.
    tiny = tiny_image(docker_client, f"{host}/auth-test")
    image_id = docker_client.images.get(tiny).id
    for where in (host, private_registry.push_host):
        docker_client.images.get(tiny).tag(f"{where}/auth-test", "v1")
        with pytest.raises(DockerError):
            docker_engine.push_image(docker_client, f"{where}/auth-test", "v1", log=lambda line: None)
    pushed = docker_engine.push_image(docker_client, f"{private_registry.push_host}/auth-test", "v1",
                                      log=lambda line: None, auth=private_registry.auth)
    docker_client.images.remove(image_id, force=True)  # the tiny image is ours alone
    assert requests.get(f"http://{private_registry.push_host}/v2/_catalog", timeout=5).status_code == 401
    lines: list[str] = []
    docker_engine.pull_image(docker_client, f"{host}/auth-test@{pushed}", lines.append)
    assert lines[-1].startswith("pulled ") and "(1 layers to download, 0 already here)" in lines[-1]
    docker_client.images.remove(image_id, force=True)
    assert registry.manifest_digest(anonymous, "auth-test", "v1") == pushed

    with pytest.raises(DockerError, match="401"):
        registry.delete_manifest(anonymous, "auth-test", pushed)
    assert registry.manifest_digest(anonymous, "auth-test", "v1") == pushed
    assert registry.delete_manifest(builder, "auth-test", pushed)
    assert registry.manifest_digest(anonymous, "auth-test", "v1") is None


def test_writes_paused_answer_503_reads_go_on(private_registry):
    builder = registry.Registry(private_registry.host, private_registry.auth)
    data = b"paused\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    private_registry.files.paused.touch()
    try:
        with pytest.raises(DockerError, match="503"):
            registry.upload_blob(builder, "paused-test", digest, data, len(data))
        assert requests.get(f"http://{private_registry.host}/v2/_catalog", timeout=5).status_code == 200
    finally:
        private_registry.files.paused.unlink()
    registry.upload_blob(builder, "paused-test", digest, data, len(data))


def test_credentials_are_generated_once_private_and_in_the_htpasswd(private_registry):
    from builder.registry_setup import ensure_credentials

    files = private_registry.files
    assert files.password_file.stat().st_mode & 0o777 == 0o600
    assert files.htpasswd.read_text().startswith("asci-builder:$2y$")  # bcrypt
    before = files.htpasswd.read_text()
    assert ensure_credentials(files, "asci-builder", group="www-data") == private_registry.password
    assert files.htpasswd.read_text() == before  # nothing rewritten when it already holds the password


def test_workers_reach_a_front_folder_outside_a_private_data_directory(docker_client, tmp_path):
    """As set-up runs it as root: the auth folder sits in a 0700 tree the proxy's www-data workers cannot
    traverse; with the htpasswd, the socket and the writes-paused flag in a front folder of their own,
    the workers (www-data, not root) still check credentials, reach the registry and see the pause."""
    import os
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    from tests.support import PrivateRegistry, free_port, require_programs

    require_programs("docker-registry", "nginx", "htpasswd")
    private = tmp_path / "data"
    private.mkdir(mode=0o700)
    (private / "auth").mkdir()
    (private / "auth" / "htpasswd").write_text("asci-builder:$2y$10$stale\n")  # from a set-up before the front
    outer = Path(tempfile.mkdtemp(prefix="asci-front-"))
    outer.chmod(0o711)
    server = PrivateRegistry(private, free_port(32000, 36000), free_port(36000, 40000), front=outer / "front")
    try:
        server.start()
        files = server.files
        assert files.socket.parent.parent == outer / "front" and files.htpasswd.parent == outer / "front"
        assert not (private / "auth" / "htpasswd").exists()  # moved to the front; the password stays here
        master = next(p.pid for p in server.processes if p.args[0] == "nginx")
        workers = [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        www = str(pwd.getpwnam("www-data").pw_uid)
        for pid in workers:
            status = Path(f"/proc/{pid}/status").read_text()
            assert f"Uid:\t{www}\t{www}\t{www}\t{www}" in status
        data = b"through the front\n"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        builder = registry.Registry(server.host, server.auth)
        with pytest.raises(DockerError, match="401"):
            registry.upload_blob(registry.Registry(server.host), "front-test", digest, data, len(data))
        files.paused.touch()
        with pytest.raises(DockerError, match="503"):  # the worker sees the flag in the front folder
            registry.upload_blob(builder, "front-test", digest, data, len(data))
        files.paused.unlink()
        registry.upload_blob(builder, "front-test", digest, data, len(data))
        assert requests.head(f"http://{server.host}/v2/front-test/blobs/{digest}", timeout=5).status_code == 200
        assert os.stat(private).st_mode & 0o777 == 0o700
    finally:
        server.stop()
        shutil.rmtree(outer, ignore_errors=True)
