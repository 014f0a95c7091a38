"""Version history (package changes between built versions) and the version current on a date."""

import datetime as dt

from asci.db import session_scope
from builder.history import changes_between, current_on, history_of, version_history
from builder.models import Environment, EnvironmentVersion, VersionStatus
from builder.versions import current_as_of

UTC = dt.timezone.utc


def _pkg(name, version, release="1", arch="noarch", epoch=0, sha="a"):
    return {"name": name, "epoch": epoch, "version": version, "release": release, "arch": arch, "sha256": sha}


def _versions():
    return [
        EnvironmentVersion(id=1, version="v1", status="succeeded", created_at=dt.datetime(2026, 1, 1, tzinfo=UTC),
                           finished_at=dt.datetime(2026, 1, 1, 1, tzinfo=UTC),
                           became_current_at=dt.datetime(2026, 1, 1, 12, tzinfo=UTC),
                           lock={"packages": [_pkg("a", "1.0"), _pkg("b", "2.0")]}),
        EnvironmentVersion(id=2, version="v2", status="failed", created_at=dt.datetime(2026, 2, 1, tzinfo=UTC),
                           lock={}),
        # built with --no-promote on 2026-03-01: succeeded, never current
        EnvironmentVersion(id=3, version="v3", status="succeeded", created_at=dt.datetime(2026, 3, 1, tzinfo=UTC),
                           finished_at=dt.datetime(2026, 3, 1, 1, tzinfo=UTC),
                           lock={"packages": [_pkg("a", "1.0", sha="b"), _pkg("b", "1.9"), _pkg("c", "0.1")]}),
        EnvironmentVersion(id=4, version="v4", status="succeeded", created_at=dt.datetime(2026, 3, 5, tzinfo=UTC),
                           finished_at=dt.datetime(2026, 3, 5, 1, tzinfo=UTC),
                           became_current_at=dt.datetime(2026, 3, 6, tzinfo=UTC),
                           lock={"packages": [_pkg("a", "1.0", sha="b"), _pkg("b", "1.9"), _pkg("c", "0.1")]}),
    ]


def test_history_uses_the_builder_diff_and_skips_failed_builds():
    env = Environment(name="mx", current_version="v4")
    env.versions = _versions()
    rows = history_of(env)
    assert [r.version for r in rows] == ["v4", "v3", "v1"]
    assert rows[0].is_current and rows[2].first and rows[0].changes == []
    kinds = {c.name: (c.kind, c.old, c.new) for c in rows[1].changes}
    assert kinds["b"] == ("downgraded", "2.0-1", "1.9-1")
    assert kinds["c"] == ("added", "", "0.1-1")
    assert kinds["a"][0] == "rebuilt"


def test_changes_name_other_arches_and_the_base_image():
    old = {"packages": [_pkg("tool", "1", arch="aarch64")], "base": {"id": "sha256:1"}}
    new = {"packages": [_pkg("tool", "2", arch="aarch64")], "base": {"id": "sha256:2"}}
    changes = changes_between(old, new)
    assert (changes[0].name, changes[0].kind) == ("tool.aarch64", "upgraded")
    assert changes[-1].kind == "other" and "base image" in changes[-1].name


def test_current_on_a_date_ignores_versions_never_promoted(settings):
    with session_scope(settings) as db:
        env = Environment(name="mx", current_version="v4")
        env.versions = _versions()
        db.add(env)
    with session_scope(settings) as db:
        assert current_on(db, "mx", dt.date(2025, 12, 31)) is None
        assert current_on(db, "mx", dt.date(2026, 1, 1)) == "v1"
        # v3 was built (and finished) on March 1st with --no-promote: it was never current
        assert current_on(db, "mx", dt.date(2026, 3, 1)) == "v1"
        assert current_on(db, "mx", dt.date(2026, 3, 5)) == "v1"
        assert current_on(db, "mx", dt.date(2026, 3, 6)) == "v4"
        # the same answer as `asci env show --as-of`
        assert current_as_of(db, "mx", dt.datetime(2026, 3, 1, 23, 59, tzinfo=UTC)).version == "v1"
        assert [r.version for r in version_history(db, "mx")] == ["v4", "v3", "v1"]
        assert version_history(db, "never-built") == []
        assert VersionStatus.SUCCEEDED == "succeeded"
