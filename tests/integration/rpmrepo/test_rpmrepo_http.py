"""The HTTP side: token-authenticated uploads, JSON listing, serving to dnf, the .repo file."""

from __future__ import annotations

import pytest
import requests

from asci.db import session_scope
import rpmrepo
from tests.support import publisher

pytestmark = pytest.mark.integration

VIEWER = "asci-demo-viewer-1.0-1.noarch.rpm"


@pytest.fixture
def server(live_server):
    """The live server, repository 'beamline' (created by an administrator) and a scientist's token
    with the publish:beamline scope, granted the right to publish there."""
    settings, base = live_server
    token = publisher(settings, "scientist", "beamline")
    return settings, base, {"Authorization": f"Bearer {token}"}


def _upload(base, headers, *files, repo="beamline"):
    parts = [("file", (name, data, "application/x-rpm")) for name, data in files]
    return requests.post(f"{base}/api/repos/{repo}/packages", headers=headers, files=parts, timeout=60)


def test_upload_list_and_install_over_http(server, fixture_rpms, dnf_client):
    settings, base, auth = server
    names = ["mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm"]
    response = _upload(base, auth, *[(n, (fixture_rpms / n).read_bytes()) for n in names])
    assert response.status_code == 201, response.text
    body = response.json()
    assert [p["status"] for p in body["packages"]] == ["published", "published"]
    assert body["event_id"] and body["revision"]

    listing = requests.get(f"{base}/api/repos/beamline/packages", timeout=10).json()
    assert {p["nevra"] for p in listing["packages"]} == {"mx-lib-1:2.0-1.noarch", "mx-process-1.0-1.noarch"}
    with session_scope(settings) as session:
        user_id = rpmrepo.find_package(session, "beamline", "mx-process-1.0-1.noarch").published_by_id
    assert user_id is not None

    dnf = dnf_client(rpmrepo.repo_url(settings, view="current"))
    assert dnf.available() == {"mx-lib-1:2.0-1.noarch", "mx-process-1.0-1.noarch"}
    dnf.run("install", "mx-process")
    assert (dnf.root / "root/usr/bin/mx-process").exists()

    again = _upload(base, auth, (names[0], (fixture_rpms / names[0]).read_bytes()))
    assert again.status_code == 200 and again.json()["packages"][0]["status"] == "already published"


def test_repo_file(server, fixture_rpms):
    settings, base, auth = server
    _upload(base, auth, (VIEWER, (fixture_rpms / VIEWER).read_bytes()))
    text = requests.get(f"{base}/repos/beamline.repo", timeout=10).text
    assert f"baseurl={base}/repos/beamline/current/" in text
    assert f"baseurl={base}/repos/beamline/all/" in text
    assert "gpgkey" not in text and "gpgcheck=0" in text
    assert requests.get(f"{base}/repos/nothere.repo", timeout=10).status_code == 404
    assert requests.get(f"{base}/repos/RPM-GPG-KEY-asci", timeout=10).status_code == 404


def test_repo_file_with_signatures(db_settings, fixture_rpms, gpg):
    from web import create_app

    key = gpg.public_key("facility")
    settings = db_settings.replace(repo_require_signature=True, repo_gpg_keys=(key,))
    client = create_app(settings).test_client()
    assert client.get("/repos/beamline.repo").status_code == 404  # no repository yet
    settings.repos_dir.joinpath("beamline", "all").mkdir(parents=True)
    text = client.get("/repos/beamline.repo").get_data(as_text=True)
    assert "gpgcheck=1" in text and "gpgkey=http://127.0.0.1:8080/repos/RPM-GPG-KEY-asci" in text
    assert client.get("/repos/RPM-GPG-KEY-asci").get_data(as_text=True) == key.read_text()


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer asci_not-a-token", "Basic dXNlcjpwdw=="])
def test_upload_without_a_valid_token_is_401(server, fixture_rpms, header):
    settings, base, _ = server
    headers = {"Authorization": header} if header else {}
    response = _upload(base, headers, (VIEWER, (fixture_rpms / VIEWER).read_bytes()))
    assert response.status_code == 401
    assert not list(settings.repos_dir.joinpath("beamline").rglob("*.rpm"))


def test_upload_errors(server, fixture_rpms):
    settings, base, auth = server
    assert _upload(base, auth, (VIEWER, (fixture_rpms / VIEWER).read_bytes())).status_code == 201

    conflict = _upload(base, auth, (VIEWER, (fixture_rpms / "variant-b" / VIEWER).read_bytes()))
    assert conflict.status_code == 409
    assert "different content" in conflict.json()["error"]

    text = _upload(base, auth, ("notes.rpm", b"hello\n"))
    assert text.status_code == 400 and "notes.rpm: not an RPM package" in text.json()["error"]

    arch = _upload(base, auth, ("odd.rpm", (fixture_rpms / "odd-arch-tool-1.0-1.aarch64.rpm").read_bytes()))
    assert arch.status_code == 400 and "not allowed" in arch.json()["error"]

    assert requests.post(f"{base}/api/repos/beamline/packages", headers=auth, timeout=10).status_code == 400
    assert _upload(base, auth, (VIEWER, b"x"), repo="Bad..Name").status_code in (400, 404)


def test_path_in_uploaded_name_is_never_followed(server, fixture_rpms, tmp_path):
    settings, base, auth = server
    response = _upload(base, auth, ("../../../../tmp/escape.rpm", (fixture_rpms / VIEWER).read_bytes()))
    assert response.status_code == 201
    assert response.json()["packages"][0]["filename"] == VIEWER
    assert not (settings.data_dir.parent / "escape.rpm").exists()
    stored = sorted(p.name for p in settings.repos_dir.rglob("*.rpm"))
    assert stored == [VIEWER, VIEWER]  # all/ and its hard link in current/

    bad = _upload(base, auth, ("../../evil.rpm", b"not an rpm"))
    assert bad.status_code == 400 and "evil.rpm" in bad.json()["error"] and ".." not in bad.json()["error"]


def test_oversized_upload_is_413(db_settings, fixture_rpms):
    from web import create_app

    settings = db_settings.replace(repo_max_rpm_bytes=1000)
    token = publisher(settings, "scientist", "beamline")
    client = create_app(settings).test_client()
    data = {"file": [((fixture_rpms / VIEWER).open("rb"), VIEWER)]}
    response = client.post("/api/repos/beamline/packages", data=data, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 413 and response.json["kind"] in ("PackageTooLarge", "RequestEntityTooLarge")
    assert not list((settings.repos_dir / "beamline").rglob("*.rpm"))


def test_served_files_stay_inside_the_repository(server, fixture_rpms):
    settings, base, auth = server
    _upload(base, auth, (VIEWER, (fixture_rpms / VIEWER).read_bytes()))
    assert requests.get(f"{base}/repos/beamline/all/{VIEWER}", timeout=10).content == (fixture_rpms / VIEWER).read_bytes()
    assert requests.get(f"{base}/repos/beamline/current/repodata/repomd.xml", timeout=10).status_code == 200
    for path in ("/repos/beamline/all/../../../asci.db", "/repos/beamline/all/%2e%2e/.lock",
                 "/repos/beamline/other/repodata/repomd.xml", "/repos/nothere/all/repodata/repomd.xml"):
        assert requests.get(base + path, timeout=10).status_code in (400, 404), path
