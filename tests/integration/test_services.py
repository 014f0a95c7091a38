"""Each real service the platform needs answers and does its job."""

import io
import shutil
import subprocess
import tarfile
import uuid

import pytest
import requests

pytestmark = pytest.mark.integration


@pytest.mark.docker
def test_dockerd_runs_host_network_containers_without_a_bridge(docker_client, base_image):
    # set-up starts dockerd with --bridge=none: no default bridge (and no docker0) exists
    assert "bridge" not in {n.name for n in docker_client.networks.list()}
    output = docker_client.containers.run(base_image, entrypoint=["cat", "/etc/os-release"], network_mode="host",
                                          remove=True, labels={"asci.test": "1"})
    assert b"bookworm" in output


def _tiny_image_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"asci registry probe\n"
        member = tarfile.TarInfo("probe.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.docker
def test_registry_on_loopback_stores_and_serves_images(docker_client):
    from tests.support import shared_auth, shared_push

    name = f"127.0.0.1:5000/asci-test/probe-{uuid.uuid4().hex[:8]}"
    docker_client.api.import_image_from_data(_tiny_image_tar(), repository=name, tag="v1")
    try:
        digest = shared_push(docker_client, name, "v1")
        assert digest.startswith("sha256:")
        repo = name.split("/", 1)[1]
        manifest = requests.get(f"http://127.0.0.1:5000/v2/{repo}/manifests/v1",
                                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
                                timeout=5)
        assert manifest.status_code == 200
        assert manifest.headers["Docker-Content-Digest"] == digest
        docker_client.images.remove(f"{name}:v1")
        pulled = docker_client.images.pull(f"{name}@{digest}")
        assert f"{name}@{digest}" in pulled.attrs["RepoDigests"]
        requests.delete(f"http://127.0.0.1:5000/v2/{repo}/manifests/{digest}", timeout=5,
                        auth=shared_auth()).raise_for_status()
        assert requests.get(f"http://127.0.0.1:5000/v2/{repo}/manifests/{digest}", timeout=5).status_code == 404
    finally:
        for image in docker_client.images.list(name=name):
            docker_client.images.remove(image.id, force=True)


@pytest.mark.postgres
def test_postgresql_answers(pg_settings):
    from sqlalchemy import text

    from asci import db

    with db.engine_for(pg_settings.effective_database_url).connect() as connection:
        assert connection.execute(text("SELECT version()")).scalar().startswith("PostgreSQL")


def test_rpm_tooling_is_installed_and_indexes_a_folder(tmp_path):
    for tool in ("rpm", "rpmbuild", "createrepo_c", "dnf", "debootstrap"):
        assert shutil.which(tool), f"{tool} is not installed"
    subprocess.run(["createrepo_c", "--quiet", str(tmp_path)], check=True)
    assert "<revision>" in (tmp_path / "repodata" / "repomd.xml").read_text()


@pytest.mark.browser
def test_chromium_renders_a_page_headless(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<title>asci probe</title><h1 id=x>drawn</h1>")
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60)
    assert '<h1 id="x">drawn</h1>' in result.stdout
