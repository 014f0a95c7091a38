"""Retract, reindex, the external-change watcher, a failing createrepo_c, and the CLI."""

from __future__ import annotations

import importlib
import os
import subprocess

import pytest

from asci.cli import main as asci_main
from asci.db import session_scope
import rpmrepo
from rpmrepo.errors import MetadataError, NotFound
from rpmrepo.metadata import read_revision
from rpmrepo.models import RpmPackage

pytestmark = pytest.mark.integration

OLD, NEW = "asci-demo-viewer-1.0-1.noarch", "asci-demo-viewer-1.1-1.noarch"


@pytest.fixture
def repo(db_settings, fixture_rpms):
    rpmrepo.publish(db_settings, [fixture_rpms / f"{OLD}.rpm", fixture_rpms / f"{NEW}.rpm",
                                  fixture_rpms / "mx-lib-2.0-1.noarch.rpm"])
    return db_settings


def test_retract_hides_from_current_but_keeps_all_installable(repo, dnf_client):
    result = rpmrepo.retract(repo, NEW)
    assert result.event_id is not None
    current = dnf_client(rpmrepo.repo_path(repo, view="current").as_uri())
    everything = dnf_client(rpmrepo.repo_path(repo, view="all").as_uri())
    assert current.available() == {OLD, "mx-lib-1:2.0-1.noarch"}
    assert NEW in everything.available()
    current.run("install", "asci-demo-viewer")  # a new build gets 1.0
    out = subprocess.run([str(current.root / "root/usr/bin/asci-demo-viewer"), "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == "asci-demo-viewer 1.0-1"
    everything.run("install", NEW)  # a lock naming the retracted NEVRA still installs
    with session_scope(repo) as session:
        assert [p.nevra for p in rpmrepo.list_packages(session, "beamline")] == [OLD, "mx-lib-1:2.0-1.noarch"]
        row = rpmrepo.find_package(session, "beamline", NEW)
        assert row.retracted and row.retracted_at is not None
        kinds = [e.kind for e in rpmrepo.events_after(session, 0)]
    assert kinds == ["publish", "retract"]
    assert rpmrepo.retract(repo, NEW).event_id is None  # idempotent
    with pytest.raises(NotFound):
        rpmrepo.retract(repo, "nothing-1-1.noarch")


def test_publishing_after_a_retract_keeps_it_retracted(repo, fixture_rpms, dnf_client):
    rpmrepo.retract(repo, OLD)
    rpmrepo.publish(repo, [fixture_rpms / "mx-process-1.0-1.noarch.rpm"])
    assert dnf_client(rpmrepo.repo_path(repo, view="current").as_uri()).available() == {
        NEW, "mx-lib-1:2.0-1.noarch", "mx-process-1.0-1.noarch"}
    assert OLD in dnf_client(rpmrepo.repo_path(repo, view="all").as_uri()).available()


def test_reindex_rebuilds_the_index_from_the_folder(repo):
    rpmrepo.retract(repo, OLD)
    with session_scope(repo) as session:
        before = {p.nevra: (p.sha256, p.retracted, p.requires) for p in
                  rpmrepo.list_packages(session, "beamline", include_retracted=True)}
        for row in session.query(RpmPackage).all():
            session.delete(row)
    result = rpmrepo.reindex(repo)
    assert sorted(result.added) == sorted(before)
    with session_scope(repo) as session:
        after = {p.nevra: (p.sha256, p.retracted, p.requires) for p in
                 rpmrepo.list_packages(session, "beamline", include_retracted=True)}
    assert after == before
    again = rpmrepo.reindex(repo)
    assert (again.added, again.updated, again.removed) == ([], [], [])


def test_watcher_records_metadata_changed_by_other_means(repo, fixture_rpms, dnf_client):
    with session_scope(repo) as session:
        assert rpmrepo.detect_external_changes(repo, session) == []
    all_dir = rpmrepo.repo_path(repo, view="all")
    (all_dir / "repodata").unlink()  # an administrator regenerates the metadata by hand, in place
    subprocess.run(["createrepo_c", "-q", "--revision", "42", str(all_dir)], check=True)
    with session_scope(repo) as session:
        (event,) = rpmrepo.detect_external_changes(repo, session)
        assert (event.kind, event.revision, event.packages) == ("external", "42", [])
    with session_scope(repo) as session:
        assert rpmrepo.detect_external_changes(repo, session) == []
        assert rpmrepo.events_after(session, 0)[-1].kind == "external"
    # the next publish adopts the hand-made metadata and swaps as usual
    rpmrepo.publish(repo, [fixture_rpms / "mx-process-1.0-1.noarch.rpm"])
    assert (all_dir / "repodata").is_symlink()
    assert "mx-process-1.0-1.noarch" in dnf_client(all_dir.as_uri()).available()
    with session_scope(repo) as session:
        assert rpmrepo.detect_external_changes(repo, session) == []


def test_failed_createrepo_leaves_everything_as_it_was(repo, fixture_rpms, tmp_path, monkeypatch):
    root = rpmrepo.repo_path(repo).parent
    revision = read_revision(root / "all")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "createrepo_c"
    fake.write_text("#!/bin/sh\necho 'createrepo_c: disk full' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(MetadataError, match="disk full"):
        rpmrepo.publish(repo, [fixture_rpms / "mx-process-1.0-1.noarch.rpm"])
    assert read_revision(root / "all") == revision == read_revision(root / "current")
    assert not (root / "all" / "mx-process-1.0-1.noarch.rpm").exists()
    assert not list((root / ".meta").glob("stage-*"))
    with session_scope(repo) as session:
        assert rpmrepo.find_package(session, "beamline", "mx-process-1.0-1.noarch") is None
        assert len(rpmrepo.events_after(session, 0)) == 1


@pytest.mark.parametrize("change", ["publish", "retract", "reindex"])
def test_a_failed_commit_puts_the_previous_metadata_back(repo, fixture_rpms, monkeypatch, change):
    """Publish, retract and reindex share one commit step: when the event cannot be recorded, the swap is undone."""
    publishing = importlib.import_module("rpmrepo.publish")  # the module (``rpmrepo.publish`` is the function)
    root = rpmrepo.repo_path(repo).parent
    revisions = read_revision(root / "all"), read_revision(root / "current")

    def refuse(*args, **kwargs):
        raise RuntimeError("event log unavailable")

    monkeypatch.setattr(publishing, "record_event", refuse)
    with pytest.raises(RuntimeError, match="event log unavailable"):
        if change == "publish":
            rpmrepo.publish(repo, [fixture_rpms / "mx-process-1.0-1.noarch.rpm"])
        elif change == "retract":
            rpmrepo.retract(repo, NEW)
        else:
            rpmrepo.reindex(repo, regenerate_metadata=True)
    assert (read_revision(root / "all"), read_revision(root / "current")) == revisions
    assert (root / "current" / f"{NEW}.rpm").is_file()
    assert not (root / "all" / "mx-process-1.0-1.noarch.rpm").exists()
    with session_scope(repo) as session:
        assert not rpmrepo.find_package(session, "beamline", NEW).retracted
        assert len(rpmrepo.events_after(session, 0)) == 1


def test_cli(settings, fixture_rpms, monkeypatch, capsys):
    monkeypatch.setenv("ASCI_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("ASCI_DATABASE_URL", raising=False)
    monkeypatch.delenv("ASCI_CONFIG", raising=False)
    assert asci_main(["rpm", "publish", str(fixture_rpms / f"{OLD}.rpm"), str(fixture_rpms / f"{NEW}.rpm")]) == 0
    assert f"published: {OLD}" in capsys.readouterr().out
    assert asci_main(["rpm", "publish", str(fixture_rpms / f"{OLD}.rpm")]) == 0
    assert f"already published: {OLD}" in capsys.readouterr().out
    assert asci_main(["rpm", "publish", str(fixture_rpms / "variant-b" / f"{OLD}.rpm")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "different content" in err
    assert asci_main(["rpm", "retract", NEW]) == 0
    capsys.readouterr()
    assert asci_main(["rpm", "list", "--all"]) == 0
    out = capsys.readouterr().out
    assert OLD in out and f"{NEW}" in out and "(retracted)" in out
    assert asci_main(["rpm", "reindex"]) == 0
    assert "0 added, 0 updated, 0 removed" in capsys.readouterr().out
    assert asci_main(["rpm", "repos"]) == 0
    assert "beamline\t1 packages" in capsys.readouterr().out
    assert asci_main(["rpm", "list", "--repo", "Not/Valid"]) == 1
