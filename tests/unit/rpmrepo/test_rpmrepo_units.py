"""Unit tests of rpmrepo pieces that need no rpm tooling (fakes for createrepo_c)."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from asci.db import session_scope, utcnow
import rpmrepo as api
from rpmrepo.errors import InvalidName, InvalidPackage, LockTimeout, MetadataError, PackageTooLarge
from rpmrepo.events import events_after, last_event, record_event
from rpmrepo.http import _label
from rpmrepo.index import Nevra, parse_nevra
from rpmrepo.metadata import prune, read_revision, regenerate
from rpmrepo.models import RpmPackage
from rpmrepo.rpmheader import check_magic
from rpmrepo.store import RepoLayout, check_repo_name, repo_lock
from rpmrepo.validate import incoming_dir, stage_stream


@pytest.mark.parametrize("text, expected", [
    ("mx-lib-1:2.0-1.noarch", Nevra("mx-lib", 1, "2.0", "1", "noarch")),
    ("mx-lib-2.0-1.noarch", Nevra("mx-lib", 0, "2.0", "1", "noarch")),
    ("asci-demo-viewer-1.1-3.el9.x86_64.rpm", Nevra("asci-demo-viewer", 0, "1.1", "3.el9", "x86_64")),
])
def test_parse_nevra(text, expected):
    assert parse_nevra(text) == expected
    assert str(expected) == text.removesuffix(".rpm").replace("-0:", "-")


@pytest.mark.parametrize("text", ["mx-lib", "noarch", "a-1.noarch", "", "x-1-1.NOARCH"])
def test_parse_nevra_refuses(text):
    with pytest.raises(InvalidName):
        parse_nevra(text)


@pytest.mark.parametrize("name", ["../etc", "Beamline", "", "a/b", ".hidden", "x" * 64])
def test_repo_names_are_checked(name):
    with pytest.raises(InvalidName):
        check_repo_name(name)


def test_repo_path_and_url(settings):
    assert api.repo_path(settings) == settings.repos_dir / "beamline" / "all"
    assert api.repo_path(settings, "mx", "current") == settings.repos_dir / "mx" / "current"
    assert api.repo_url(settings, "mx") == "http://127.0.0.1:8080/repos/mx/current/"
    assert api.repo_url(settings.replace(public_url="https://asci.example/"), view="all") == \
        "https://asci.example/repos/beamline/all/"
    with pytest.raises(InvalidName):
        api.repo_path(settings, view="latest")


def test_package_reexports_the_api():
    import rpmrepo

    assert set(rpmrepo.__all__) >= {"publish", "list_packages", "repo_path", "repo_url", "find_package", "events_after"}
    assert rpmrepo.__doc__ and "current" in rpmrepo.__doc__


@pytest.mark.parametrize("given, label", [
    ("../../etc/passwd.rpm", "passwd.rpm"), ("C:\\x\\y.rpm", "y.rpm"), ("..", "upload-3"), (None, "upload-3"),
    ("a\x00b.rpm", "ab.rpm"),
])
def test_upload_labels_drop_paths(given, label):
    assert _label(given, 3) == label


def test_stage_stream_enforces_the_size_limit(settings):
    folder = incoming_dir(settings.replace(repo_max_rpm_bytes=10))
    small = settings.replace(repo_max_rpm_bytes=10)
    path = stage_stream(small, io.BytesIO(b"0123456789"), folder, "ok.rpm")
    assert path.parent == folder and path.read_bytes() == b"0123456789"
    with pytest.raises(PackageTooLarge, match="big.rpm: larger than the limit of 10 bytes"):
        stage_stream(small, io.BytesIO(b"0123456789A"), folder, "big.rpm")
    assert list(folder.iterdir()) == [path]


def test_check_magic(tmp_path):
    text = tmp_path / "x.rpm"
    text.write_text("hello")
    with pytest.raises(InvalidPackage, match="x.rpm: not an RPM package"):
        check_magic(text, "x.rpm")
    good = tmp_path / "y.rpm"
    good.write_bytes(b"\xed\xab\xee\xdb" + b"\0" * 92)
    check_magic(good, "y.rpm")


def _hold_lock(root: str, seconds: float, ready) -> None:
    layout = RepoLayout("beamline", Path(root))
    with repo_lock(layout, 5):
        ready.set()
        time.sleep(seconds)


def test_repo_lock_excludes_other_processes(tmp_path):
    layout = RepoLayout("beamline", tmp_path / "beamline")
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(layout.root), 1.0, ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockTimeout, match="busy"):
            with repo_lock(layout, 0.2):
                pass
        started = time.monotonic()
        with repo_lock(layout, 10):
            assert time.monotonic() - started > 0.2
    finally:
        holder.join()


def _fake_createrepo(tmp_path, monkeypatch, body: str) -> None:
    """Put a fake createrepo_c first on PATH (a shell script writing repodata/repomd.xml)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "createrepo_c"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


FAKE_OK = r'''
while [ $# -gt 1 ]; do
  case "$1" in --revision) rev=$2; shift;; --outputdir) out=$2; shift;; esac; shift
done
mkdir -p "$out/repodata"
echo "data $rev" > "$out/repodata/$rev-primary.xml.gz"
cat > "$out/repodata/repomd.xml" <<XML
<?xml version="1.0"?><repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>$rev</revision>
<data type="primary"><location href="repodata/$rev-primary.xml.gz"/></data></repomd>
XML
'''


def test_regenerate_swaps_atomically_and_keeps_old_files(tmp_path, monkeypatch):
    _fake_createrepo(tmp_path, monkeypatch, FAKE_OK)
    layout = RepoLayout("beamline", tmp_path / "beamline")
    regenerate(layout, separate_current=False, revision=100)
    assert read_revision(layout.all_dir) == read_revision(layout.current_dir) == "100"
    swap = regenerate(layout, separate_current=True, revision=101)
    assert read_revision(layout.all_dir) == "101"
    # a client holding the old repomd.xml can still fetch the files it names
    assert (layout.all_dir / "repodata" / "100-primary.xml.gz").is_file()
    assert (layout.all_dir / "repodata").is_symlink()
    swap.undo()
    assert read_revision(layout.all_dir) == read_revision(layout.current_dir) == "100"
    for revision in range(102, 108):
        regenerate(layout, separate_current=False, revision=revision)
    prune(layout)
    assert sorted(p.name for p in layout.meta_dir.iterdir()) == ["105", "106", "107"]


def test_failed_regeneration_keeps_the_previous_metadata(tmp_path, monkeypatch):
    _fake_createrepo(tmp_path, monkeypatch, FAKE_OK)
    layout = RepoLayout("beamline", tmp_path / "beamline")
    regenerate(layout, separate_current=False, revision=7)
    _fake_createrepo(tmp_path, monkeypatch, "echo 'boom: out of space' >&2; exit 3\n")
    with pytest.raises(MetadataError, match="out of space"):
        regenerate(layout, separate_current=False, revision=8)
    assert read_revision(layout.all_dir) == "7"
    assert not list(layout.meta_dir.glob("stage-*"))


def _row(repo="beamline", name="mx-lib", **extra):
    values = dict(repo=repo, name=name, epoch=0, version="1", release="1", arch="noarch",
                  filename=f"{name}-1-1.noarch.rpm", sha256="0" * 64, size=1, buildtime=utcnow(), summary="s",
                  requires=["a >= 1"], provides=[name], published_at=utcnow(), retracted=False)
    values.update(extra)
    return RpmPackage(**values)


def test_index_unique_nevra_per_repo(db_settings):
    with session_scope(db_settings) as session:
        session.add_all([_row(), _row(repo="other")])
    with pytest.raises(IntegrityError):
        with session_scope(db_settings) as session:
            session.add(_row(filename="renamed.rpm"))
    with session_scope(db_settings) as session:
        rows = api.list_packages(session, "beamline")
        assert [r.as_dict()["requires"] for r in rows] == [["a >= 1"]]
        assert api.find_package(session, "beamline", "mx-lib-0:1-1.noarch").id == rows[0].id
        assert api.find_package(session, "beamline", "mx-lib-1:1-1.noarch") is None


def test_events_have_increasing_ids(db_settings):
    with session_scope(db_settings) as session:
        first = record_event(session, "beamline", "publish", ["a-1-1.noarch"], 1)
        record_event(session, "mx", "retract", ["b-1-1.noarch"], 2)
        record_event(session, "beamline", "external", [], "3")
    with session_scope(db_settings) as session:
        events = events_after(session, 0)
        assert [e.kind for e in events] == ["publish", "retract", "external"]
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert [e.kind for e in events_after(session, first.id)] == ["retract", "external"]
        assert [e.kind for e in events_after(session, 0, limit=1)] == ["publish"]
        assert [e.revision for e in events_after(session, 0, repo="beamline")] == ["1", "3"]
        assert last_event(session, "mx").packages == ["b-1-1.noarch"]
        assert events[0].as_dict()["packages"] == ["a-1-1.noarch"]
    with pytest.raises(ValueError):
        with session_scope(db_settings) as session:
            record_event(session, "beamline", "deleted", [], 1)


@pytest.mark.postgres
def test_events_become_visible_in_id_order_on_postgresql(pg_settings):
    import threading

    from asci.db import session_factory

    first = session_factory(pg_settings)()
    early = record_event(first, "beamline", "publish", ["a-1-1.noarch"], 1)
    done = threading.Event()

    def second_writer():
        with session_scope(pg_settings) as session:
            record_event(session, "mx", "publish", ["b-1-1.noarch"], 1)
        done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    try:
        assert not done.wait(0.5)  # waits for the first transaction: no later id can be seen first
        first.commit()
        assert done.wait(10)
    finally:
        first.close()
        thread.join()
    with session_scope(pg_settings) as session:
        events = events_after(session, 0)
    assert [e.repo for e in events] == ["beamline", "mx"] and events[0].id == early.id


def _query(summary: str = "<string>A tool</string>", extra: str = "") -> str:
    fields = {"NAME": "<string>tool</string>", "EPOCH": "<integer>0</integer>", "VERSION": "<string>1.0</string>",
              "RELEASE": "<string>1</string>", "ARCH": "<string>noarch</string>", "SUMMARY": summary,
              "BUILDTIME": "<integer>1795600000</integer>", "SOURCERPM": "<string>tool-1.0-1.src.rpm</string>",
              "SIGNED": "<string>none</string>"}
    body = "".join(f"<f n='{key}'>\t{value}</f>" for key, value in fields.items())
    return f"<header>{body}<req>\t<string>rpmlib(X) &lt;= 1</string></req><req>\t<string>libc</string></req>" \
           f"<prov>\t<string>tool = 1.0-1</string></prov>{extra}</header>"


def test_header_values_are_read_from_xml_where_markup_in_a_value_stays_text():
    from rpmrepo.rpmheader import parse_query

    header = parse_query(_query("<string>A &lt;/string&gt;&lt;/f&gt;&lt;f n='BUILDTIME'&gt; tool</string>"), "x.rpm")
    assert header.summary == "A </string></f><f n='BUILDTIME'> tool"
    assert header.buildtime.year == 2026 and header.requires == ["libc"] and header.provides == ["tool = 1.0-1"]


@pytest.mark.parametrize("summary, extra, message", [
    ("<string>A tool\nBUILDTIME\t0</string>", "", "control characters"),
    ("<string>A tool</string>", "<f n='SUMMARY'><string>again</string></f>", "appears twice"),
    ("<string>one</string><string>two</string>", "", "lacks a single summary"),
    ("<string>A tool</string>", "<req><string>evil\nPROV\tkernel</string></req>", "requires"),
])
def test_forged_or_odd_header_values_are_refused(summary, extra, message):
    from rpmrepo.rpmheader import parse_query

    with pytest.raises(InvalidPackage, match=message):
        parse_query(_query(summary, extra), "x.rpm")
