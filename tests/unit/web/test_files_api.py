"""The files API with the broker's fake backend (files in memory): who may do what, the answers of
every path that leaves the home, uploads (overwrite, 409, 413, 411), deletions, listings, archives,
/data read only, and the audit log of guests' changes."""

import io
import tarfile
import zipfile

import pytest
from sqlalchemy import select

from asci import accounts, audit
from asci.db import session_scope
from broker import service, shares
from broker.models import Experiment, ExperimentMember
from tests.support import PASSWORD, MemoryFileChannel, csrf_of, login
from tests.support import user_of as user


@pytest.fixture
def desktop(settings, world):
    """alice's running session; its files (the fake backend's in-memory channel)."""
    with session_scope(settings) as db:
        row = world["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current",
                                     world["e1"])
        session_id, fake_id = row.id, row.backend_state["fake_id"]
    channel = world["backend"].homes.setdefault(fake_id, MemoryFileChannel())
    channel.add("home", "notes.txt", b"hello")
    channel.add("home", "results/run1/out.dat", b"\x00\x01" * 1000)
    channel.add("data", "raw/scan.h5", b"scan")
    return {"id": session_id, "files": channel}


def client_of(app, name):
    client = app.test_client()
    assert login(client, name).status_code == 302
    return client, csrf_of(client.get("/").get_data(as_text=True))


@pytest.fixture
def carol(settings, world):
    with session_scope(settings) as db:
        row = accounts.create_user(db, f"carol-{world['suffix']}", PASSWORD)
        e1 = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        db.add(ExperimentMember(experiment_id=e1.id, user_id=row.id))
        db.flush()
        return row.username


def _share(settings, world, desktop, guest, mode):
    with session_scope(settings) as db:
        shares.share(db, desktop["id"], db.merge(user(settings, world, "alice")), guest, mode)


def test_the_owner_lists_downloads_uploads_and_deletes(app, world, desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    base = f"/api/sessions/{desktop['id']}/files"
    listed = alice.get(base + "/")
    assert listed.status_code == 200
    assert [(e["name"], e["type"]) for e in listed.json["entries"]] == [("notes.txt", "file"), ("results", "dir")]
    assert alice.get(base + "/results/run1/").json["entries"][0]["size"] == 2000
    got = alice.get(base + "/notes.txt")
    assert got.status_code == 200 and got.data == b"hello" and got.headers["Content-Length"] == "5"
    assert "attachment" in got.headers["Content-Disposition"]
    big = b"x" * (3 << 20)  # above the 1 MiB every other request body is held to, from the login cookie
    put = alice.put(base + "/new/deep/file.bin", data=big, headers={"X-CSRFToken": csrf})
    assert put.status_code == 201, put.json
    assert put.json["size"] == len(big) and desktop["files"].roots["home"][0]["new/deep/file.bin"] == big
    form = alice.put(base + "/form.bin", data={"a": "b" * (2 << 20)}, headers={"X-CSRFToken": csrf})
    assert form.status_code == 413 and "form.bin" not in desktop["files"].roots["home"][0]  # forms keep the limit
    again = alice.put(base + "/notes.txt", data=b"replaced", headers={"X-CSRFToken": csrf})
    assert again.status_code == 409 and desktop["files"].roots["home"][0]["notes.txt"] == b"hello"
    over = alice.put(base + "/notes.txt?overwrite=1", data=b"replaced", headers={"X-CSRFToken": csrf})
    assert over.status_code == 201 and desktop["files"].roots["home"][0]["notes.txt"] == b"replaced"
    assert alice.put(base + "/results", data=b"x", headers={"X-CSRFToken": csrf}).status_code == 409
    assert alice.put(base + "/notes.txt/inner", data=b"x", headers={"X-CSRFToken": csrf}).status_code == 409
    assert alice.delete(base + "/results", headers={"X-CSRFToken": csrf}).status_code == 409
    assert alice.delete(base + "/notes.txt", headers={"X-CSRFToken": csrf}).status_code == 204
    assert "notes.txt" not in desktop["files"].roots["home"][0]
    assert alice.delete(base + "/notes.txt", headers={"X-CSRFToken": csrf}).status_code == 404
    # a cookie without the CSRF header changes nothing
    assert alice.put(base + "/csrf.txt", data=b"x").status_code == 400
    assert "csrf.txt" not in desktop["files"].roots["home"][0]


def test_folders_download_as_zip_or_tar_and_not_bare(app, world, desktop):
    alice, _ = client_of(app, world["names"]["alice"])
    base = f"/api/sessions/{desktop['id']}/files"
    bare = alice.get(base + "/results")  # a folder named without its slash lists itself
    assert bare.status_code == 200 and bare.json["entries"][0]["name"] == "run1"
    tar = alice.get(base + "/results?archive=tar")
    assert tar.status_code == 200 and tar.mimetype == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(tar.data)) as archive:
        assert archive.extractfile("results/run1/out.dat").read() == b"\x00\x01" * 1000
    zipped = alice.get(base + "/results?archive=zip")
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.data)) as archive:
        assert archive.read("results/run1/out.dat") == b"\x00\x01" * 1000
    assert alice.get(base + "/notes.txt?archive=zip").status_code == 409
    assert alice.get(base + "/results?archive=rar").status_code == 400


@pytest.mark.parametrize("path", [
    "../etc/passwd", "..%2fetc%2fpasswd", "%2e%2e/etc/passwd", "%252e%252e/x", "a/../../x", "./notes.txt",
    "%2Fetc%2Fpasswd", "/etc/passwd", "notes.txt%00.png", "a//b", "results/run1/..%2F..%2F..%2Fx", "~root/x",
])
def test_paths_that_leave_the_home_are_refused_and_touch_nothing(app, world, desktop, path):
    alice, csrf = client_of(app, world["names"]["alice"])
    base = f"/api/sessions/{desktop['id']}/files/"
    before = dict(desktop["files"].roots["home"][0])
    for method in ("get", "put", "delete"):
        reply = getattr(alice, method)(base + path, data=b"evil" if method == "put" else None,
                                       headers={"X-CSRFToken": csrf})
        assert reply.status_code in (400, 404), (method, path, reply.status_code)
        assert reply.is_json and reply.json["error"]
    assert desktop["files"].roots["home"][0] == before


def test_other_users_get_404_and_view_only_guests_only_read(app, settings, world, desktop, carol):
    base = f"/api/sessions/{desktop['id']}/files"
    for who in ("bob", "root"):
        other, csrf = client_of(app, world["names"][who])
        assert other.get(base + "/").status_code == 404
        assert other.get(base + "/notes.txt").status_code == 404
        assert other.put(base + "/x", data=b"x", headers={"X-CSRFToken": csrf}).status_code == 404
        assert other.delete(base + "/notes.txt", headers={"X-CSRFToken": csrf}).status_code == 404
    guest, csrf = client_of(app, carol)
    assert guest.get(base + "/").status_code == 404  # not shared yet
    _share(settings, world, desktop, carol, "view")
    assert guest.get(base + "/notes.txt").data == b"hello"
    assert guest.put(base + "/x", data=b"x", headers={"X-CSRFToken": csrf}).status_code == 403
    assert guest.delete(base + "/notes.txt", headers={"X-CSRFToken": csrf}).status_code == 403
    assert "x" not in desktop["files"].roots["home"][0] and "notes.txt" in desktop["files"].roots["home"][0]
    _share(settings, world, desktop, carol, "control")
    assert guest.put(base + "/from-carol.txt", data=b"hi", headers={"X-CSRFToken": csrf}).status_code == 201
    assert guest.delete(base + "/notes.txt", headers={"X-CSRFToken": csrf}).status_code == 204
    with session_scope(settings) as db:
        events = [(e.actor, e.action, e.details["path"]) for e in audit.recent(db, action_prefix="files.")]
    assert events == [(carol, "files.delete", "notes.txt"), (carol, "files.upload", "from-carol.txt")]


def test_uploads_above_the_limit_are_413_and_without_a_length_411(app, settings, world, desktop):
    small = settings.replace(files_max_upload_bytes=100)
    app.extensions["asci_settings"] = small
    alice, csrf = client_of(app, world["names"]["alice"])
    base = f"/api/sessions/{desktop['id']}/files"
    big = alice.put(base + "/big.bin", data=b"x" * 101, headers={"X-CSRFToken": csrf})
    assert big.status_code == 413 and big.is_json and "big.bin" not in desktop["files"].roots["home"][0]
    assert alice.put(base + "/ok.bin", data=b"x" * 100, headers={"X-CSRFToken": csrf}).status_code == 201
    chunked = alice.put(base + "/chunked.bin", input_stream=io.BytesIO(b"abc"),
                        headers={"X-CSRFToken": csrf, "Transfer-Encoding": "chunked"})
    assert chunked.status_code == 411 and "chunked.bin" not in desktop["files"].roots["home"][0]


def test_data_is_read_only_and_a_stopped_session_has_no_files(app, settings, world, desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    data = f"/api/sessions/{desktop['id']}/data"
    assert alice.get(data + "/").json["entries"][0]["name"] == "raw"
    assert alice.get(data + "/raw/scan.h5").data == b"scan"
    assert alice.put(data + "/raw/new", data=b"x", headers={"X-CSRFToken": csrf}).status_code == 405
    assert alice.delete(data + "/raw/scan.h5", headers={"X-CSRFToken": csrf}).status_code == 405
    assert alice.delete(f"/api/sessions/{desktop['id']}", headers={"X-CSRFToken": csrf}).status_code == 200
    assert alice.get(f"/api/sessions/{desktop['id']}/files/").status_code == 409
    assert alice.get("/api/sessions/99999/files/").status_code == 404
    for url in (f"/api/sessions/{desktop['id']}/files/", f"/api/sessions/{desktop['id']}/files/results/"):
        refused = alice.put(url, data=b"x", headers={"X-CSRFToken": csrf})  # a folder's URL takes no PUT
        assert refused.status_code == 405 and "GET" in refused.headers["Allow"]
