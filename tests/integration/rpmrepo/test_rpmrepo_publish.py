"""Publishing real RPMs and reading them back with dnf (file:// baseurl)."""

from __future__ import annotations

import subprocess

import pytest

import rpmrepo
from asci.accounts import create_user
from asci.db import session_scope
from rpmrepo.errors import ConflictError
from rpmrepo.metadata import read_revision

pytestmark = pytest.mark.integration

APPS = ["asci-demo-viewer-1.0-1.noarch.rpm", "asci-demo-viewer-1.1-1.noarch.rpm", "mx-lib-2.0-1.noarch.rpm",
        "mx-process-1.0-1.noarch.rpm", "imaging-tool-3.2-1.x86_64.rpm"]


def _snapshot(settings, repo="beamline"):
    """Everything a refused publish must leave unchanged."""
    root = rpmrepo.repo_path(settings, repo, "all").parent
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".incoming" not in p.parts)
    with session_scope(settings) as session:
        rows = [(p.nevra, p.sha256, p.retracted) for p in rpmrepo.list_packages(session, repo, include_retracted=True)]
        events = [e.id for e in rpmrepo.events_after(session, 0, 1000)]
    return files, rows, events, read_revision(root / "all"), read_revision(root / "current")


def test_publish_index_and_install_with_dnf(db_settings, fixture_rpms, dnf_client, tmp_path):
    with session_scope(db_settings) as session:
        user = create_user(session, "scientist")
    result = rpmrepo.publish(db_settings, [fixture_rpms / name for name in APPS], user=user)

    assert [p.status for p in result.packages] == ["published"] * 5
    assert result.event_id is not None and result.revision
    with session_scope(db_settings) as session:
        rows = {p.nevra: p for p in rpmrepo.list_packages(session, "beamline")}
        assert set(rows) == {"asci-demo-viewer-1.0-1.noarch", "asci-demo-viewer-1.1-1.noarch",
                             "mx-lib-1:2.0-1.noarch", "mx-process-1.0-1.noarch", "imaging-tool-3.2-1.x86_64"}
        process = rows["mx-process-1.0-1.noarch"]
        assert process.requires == ["mx-lib >= 1:2.0"]
        assert process.summary == "MX data processing pipeline"
        assert process.published_by_id == user.id
        assert rows["mx-lib-1:2.0-1.noarch"].epoch == 1
        assert "libmx = 2.0" in rows["mx-lib-1:2.0-1.noarch"].provides
        found = rpmrepo.find_package(session, "beamline", "mx-lib-2.0-1.noarch")
        assert found is not None and found.filename == "mx-lib-2.0-1.noarch.rpm"
        (event,) = rpmrepo.events_after(session, 0)
        assert event.kind == "publish" and event.revision == result.revision and len(event.packages) == 5

    for view in ("all", "current"):
        dnf = dnf_client(rpmrepo.repo_path(db_settings, view=view).as_uri())
        assert dnf.available() == set(rows)
    dnf.run("install", "mx-process", "asci-demo-viewer")
    bin_dir = dnf.root / "root" / "usr" / "bin"
    version = subprocess.run([str(bin_dir / "asci-demo-viewer"), "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == "asci-demo-viewer 1.1-1"
    assert (bin_dir / "mx-lib").exists()  # pulled in as a dependency
    assert (dnf.root / "root" / "usr/share/applications/mx-process.desktop").exists()


def test_same_bytes_is_a_no_op_and_different_bytes_are_refused(db_settings, fixture_rpms):
    rpmrepo.publish(db_settings, [fixture_rpms / APPS[0]])
    before = _snapshot(db_settings)

    again = rpmrepo.publish(db_settings, [fixture_rpms / APPS[0]])
    assert [p.status for p in again.packages] == ["already published"]
    assert again.event_id is None and again.revision is None
    assert _snapshot(db_settings) == before

    with pytest.raises(ConflictError, match="already published in 'beamline' with different content"):
        rpmrepo.publish(db_settings, [fixture_rpms / "variant-b" / APPS[0]])
    assert _snapshot(db_settings) == before


def test_a_batch_is_all_or_nothing_and_regenerates_once(db_settings, fixture_rpms):
    rpmrepo.publish(db_settings, [fixture_rpms / APPS[0]])
    before = _snapshot(db_settings)
    with pytest.raises(ConflictError):
        rpmrepo.publish(db_settings, [fixture_rpms / APPS[1], fixture_rpms / "variant-b" / APPS[0]])
    assert _snapshot(db_settings) == before

    result = rpmrepo.publish(db_settings, [fixture_rpms / name for name in APPS])
    assert [p.status for p in result.packages] == ["already published"] + ["published"] * 4
    generations = [p for p in (rpmrepo.repo_path(db_settings).parent / ".meta").iterdir() if p.name.isdigit()]
    assert len(generations) == 2  # one per publish call, not one per package


def test_several_repositories_are_independent(db_settings, fixture_rpms, dnf_client):
    rpmrepo.publish(db_settings, [fixture_rpms / APPS[0]], repo="mx")
    rpmrepo.publish(db_settings, [fixture_rpms / APPS[1]])
    assert rpmrepo.list_repos(db_settings) == ["beamline", "mx"]
    assert dnf_client(rpmrepo.repo_path(db_settings, "mx", "current").as_uri()).available() == {
        "asci-demo-viewer-1.0-1.noarch"}
    with session_scope(db_settings) as session:
        assert [p.nevra for p in rpmrepo.list_packages(session, "beamline")] == ["asci-demo-viewer-1.1-1.noarch"]
