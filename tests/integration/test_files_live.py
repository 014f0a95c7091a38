"""Files in and out of a real desktop through the HTTP API (the local engine, ``docker exec`` as the
session's uid): a 48 MiB upload arrives byte for byte, owned by the session's uid with the desktop's
umask; a file made inside the desktop downloads; a folder downloads as tar and zip archives that extract
to the same files; symlinks that point out of the home are refused and nothing is written through them;
/data downloads and is never written."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import uuid
import zipfile

import pytest
import requests

from asci.config import Settings
from tests.support import extract_all, free_port, make_world, remove_sessions, serving

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]
MAIN = "unix:///var/run/docker.sock"


@pytest.fixture(scope="module")
def desktop(tmp_path_factory, pushed_image, docker_client):
    """alice's running desktop on the local engine, the app serving the API; yields a dict of handles."""
    from asci import db
    from broker import service
    from broker.backends.docker import DockerBackend
    from web import create_app

    reference, digest = pushed_image
    tmp = tmp_path_factory.mktemp("files-live")
    settings = Settings(data_dir=tmp / "data", broker_instance=f"files{uuid.uuid4().hex[:8]}",
                        session_start_timeout_s=90, log_format="text")
    db.upgrade(settings)
    world = make_world(settings, [dict(name="node1", docker_url=MAIN, cpus=4, memory_bytes=8 << 30)],
                       image=reference, digest=digest)
    broker = service.Broker(settings, DockerBackend())
    try:
        with serving(create_app(settings, broker=broker), port=free_port(21000, 29000)) as url:
            auth = {"Authorization": f"Bearer {world['tokens']['alice']}"}
            reply = requests.post(f"{url}/api/sessions", json={"environment": world["env"],
                                                                "experiment": world["e1"], "memory": "1g"},
                                  headers=auth, timeout=120)
            assert reply.status_code == 201, reply.text
            session = reply.json()
            container = docker_client.containers.get(broker_state(settings, session["id"]))
            yield {"url": url, "auth": auth, "world": world, "id": session["id"], "container": container,
                   "base": f"{url}/api/sessions/{session['id']}", "settings": settings}
    finally:
        remove_sessions(MAIN, settings.broker_instance, world["names"].values())
        broker.backend.close()


def broker_state(settings, session_id: int) -> str:
    from asci.db import session_scope
    from broker.models import DesktopSession

    with session_scope(settings) as db:
        return db.get(DesktopSession, session_id).backend_state["container_id"]


def inside(desktop, script: str) -> str:
    """Run ``script`` in the desktop as its user; its output."""
    result = desktop["container"].exec_run(["sh", "-c", script], user="4242:4242")
    assert result.exit_code == 0, result.output
    return result.output.decode()


def test_a_48_mib_upload_arrives_byte_for_byte_as_the_sessions_uid(desktop):
    payload = os.urandom(48 << 20)
    url = desktop["base"] + "/files/uploads/deep/big.bin"
    reply = requests.put(url, data=io.BytesIO(payload), headers={**desktop["auth"],
                                                                  "Content-Length": str(len(payload))}, timeout=300)
    assert reply.status_code == 201, reply.text
    assert reply.json()["size"] == len(payload)
    digest, owner = inside(desktop, "sha256sum ~/uploads/deep/big.bin | cut -d' ' -f1; "
                                    "stat -c '%u:%g %a' ~/uploads/deep/big.bin ~/uploads/deep ~/uploads").split("\n", 1)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert owner.split() == ["4242:4242", "644", "4242:4242", "755", "4242:4242", "755"]  # umask 022
    assert "asci-upload" not in inside(desktop, "ls -a ~/uploads/deep")  # no temporary file is left
    again = requests.put(url, data=b"short", headers=desktop["auth"], timeout=30)
    assert again.status_code == 409 and inside(desktop, "stat -c %s ~/uploads/deep/big.bin").strip() == str(48 << 20)
    replaced = requests.put(url + "?overwrite=1", data=b"short", headers=desktop["auth"], timeout=30)
    assert replaced.status_code == 201 and inside(desktop, "cat ~/uploads/deep/big.bin") == "short"
    listed = requests.get(desktop["base"] + "/files/uploads/deep/", headers=desktop["auth"], timeout=30).json()
    assert [(e["name"], e["type"], e["size"]) for e in listed["entries"]] == [("big.bin", "file", 5)]
    in_the_way = requests.put(url + "/inner", data=b"x", headers=desktop["auth"], timeout=30)
    assert in_the_way.status_code == 409, in_the_way.text  # a file where a folder would have to be made
    assert requests.delete(url, headers=desktop["auth"], timeout=30).status_code == 204
    assert inside(desktop, "ls -A ~/uploads/deep") == ""


def test_a_file_made_inside_the_desktop_downloads(desktop):
    inside(desktop, "head -c 3000000 /dev/urandom > ~/made-inside.bin; printf 'résumé\\n' > ~/'naïve name.txt'")
    expected = inside(desktop, "sha256sum ~/made-inside.bin | cut -d' ' -f1").strip()
    with requests.get(desktop["base"] + "/files/made-inside.bin", headers=desktop["auth"], stream=True,
                      timeout=60) as reply:
        assert reply.status_code == 200 and reply.headers["Content-Length"] == "3000000"
        assert hashlib.sha256(reply.raw.read()).hexdigest() == expected
    named = requests.get(desktop["base"] + "/files/na%C3%AFve%20name.txt", headers=desktop["auth"], timeout=30)
    assert named.content == "résumé\n".encode() and "filename*=UTF-8''na%C3%AFve%20name.txt" in \
        named.headers["Content-Disposition"]


def test_a_folder_downloads_as_archives_that_extract_to_the_same_files(desktop, tmp_path):
    inside(desktop, "mkdir -p ~/results/run1/empty ~/results/run2 && head -c 100000 /dev/urandom > ~/results/run1/a.dat"
                    " && echo two > ~/results/run2/b.txt && ln -sf /etc/passwd ~/results/passwd-link")
    sums = dict(line.split("  ./")[::-1] for line in
                inside(desktop, "cd ~/results && find . -type f -exec sha256sum {} +").strip().splitlines())
    tar = requests.get(desktop["base"] + "/files/results?archive=tar", headers=desktop["auth"], timeout=60)
    assert tar.status_code == 200 and tar.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        extract_all(archive, tmp_path / "tar", "tar")
        link = archive.getmember("results/passwd-link")
        assert link.issym() and link.linkname == "/etc/passwd"  # stored as a link, never its target's content
    zipped = requests.get(desktop["base"] + "/files/results?archive=zip", headers=desktop["auth"], timeout=60)
    assert zipped.status_code == 200 and zipped.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        archive.extractall(tmp_path / "zip")
    for kind in ("tar", "zip"):
        top = tmp_path / kind / "results"
        found = {str(path.relative_to(top)): hashlib.sha256(path.read_bytes()).hexdigest()
                 for path in top.rglob("*") if path.is_file() and not path.is_symlink()}
        assert found == sums, kind
        assert (top / "run1" / "empty").is_dir()


def test_symlinks_out_of_the_home_are_refused_and_nothing_is_written_through_them(desktop):
    inside(desktop, "ln -sfn /tmp ~/tmp-link && ln -sf /etc/hostname ~/host-link && mkdir -p ~/in && "
                    "ln -sfn in ~/in-link && echo ok > ~/in/inner.txt")
    base, auth = desktop["base"], desktop["auth"]
    for path in ("tmp-link/", "host-link", "tmp-link/x", "in-link/../../etc/passwd"):
        reply = requests.get(f"{base}/files/{path}", headers=auth, timeout=30)
        assert reply.status_code in (400, 404), (path, reply.status_code)
    for path in ("tmp-link/planted", "tmp-link/sub/planted", "host-link"):
        reply = requests.put(f"{base}/files/{path}?overwrite=1", data=b"evil", headers=auth, timeout=30)
        assert reply.status_code in (400, 404), (path, reply.status_code, reply.text)
    assert "planted" not in inside(desktop, "ls -A /tmp") and "evil" not in inside(desktop, "cat /etc/hostname")
    # a symlink that stays inside the home is followed; deleting a link removes the link, not its target
    assert requests.get(f"{base}/files/in-link/inner.txt", headers=auth, timeout=30).content == b"ok\n"
    assert requests.delete(f"{base}/files/host-link", headers=auth, timeout=30).status_code == 204
    assert inside(desktop, "cat /etc/hostname").strip()


def test_data_downloads_and_is_never_written(desktop):
    base, auth = desktop["base"], desktop["auth"]
    listed = requests.get(f"{base}/data/", headers=auth, timeout=30)
    assert listed.status_code == 200 and "run1.h5" in [e["name"] for e in listed.json()["entries"]]
    assert requests.get(f"{base}/data/run1.h5", headers=auth, timeout=30).content == b"frames\n"
    assert requests.put(f"{base}/data/new.txt", data=b"x", headers=auth, timeout=30).status_code == 405
    assert requests.get(f"{base}/data/../etc/passwd", headers=auth, timeout=30).status_code in (400, 404)


def test_another_users_token_gets_404(desktop):
    bob = {"Authorization": f"Bearer {desktop['world']['tokens']['bob']}"}
    assert requests.get(desktop["base"] + "/files/", headers=bob, timeout=30).status_code == 404
    assert requests.put(desktop["base"] + "/files/x", data=b"x", headers=bob, timeout=30).status_code == 404
