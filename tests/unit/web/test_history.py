"""Package changes between versions and the version current on a date."""

import datetime as dt

from builder.models import Environment, EnvironmentVersion
from web.history import current_on, history, package_changes

UTC = dt.timezone.utc


def _pkg(name, version, release="1", arch="noarch", epoch=0, sha="a"):
    return {"name": name, "epoch": epoch, "version": version, "release": release, "arch": arch, "sha256": sha}


def _env():
    env = Environment(name="mx", current_version="v3")
    env.versions = [
        EnvironmentVersion(id=1, version="v1", status="succeeded", created_at=dt.datetime(2026, 1, 1, tzinfo=UTC),
                           became_current_at=dt.datetime(2026, 1, 1, 12, tzinfo=UTC),
                           lock={"packages": [_pkg("a", "1.0"), _pkg("b", "2.0")]}),
        EnvironmentVersion(id=2, version="v2", status="failed", created_at=dt.datetime(2026, 2, 1, tzinfo=UTC),
                           lock={}),
        EnvironmentVersion(id=3, version="v3", status="succeeded", created_at=dt.datetime(2026, 3, 1, tzinfo=UTC),
                           became_current_at=dt.datetime(2026, 3, 2, tzinfo=UTC),
                           lock={"packages": [_pkg("a", "1.0", sha="b"), _pkg("b", "1.9"), _pkg("c", "0.1")]}),
    ]
    return env


def test_history_uses_the_builder_diff_and_skips_failed_builds():
    rows = history(_env())
    assert [r.version for r in rows] == ["v3", "v1"]
    assert rows[0].is_current and rows[1].first
    kinds = {c.name: (c.kind, c.old, c.new) for c in rows[0].changes}
    assert kinds["b"] == ("downgraded", "2.0-1", "1.9-1")
    assert kinds["c"] == ("added", "", "0.1-1")
    assert kinds["a"][0] == "rebuilt"


def test_own_comparison_for_partial_locks():
    changes = package_changes({"packages": [{"name": "a", "version": "1", "release": "1"}]},
                              {"packages": [{"name": "a", "version": "2", "release": "1"}, {"name": "z"}]})
    assert [(c.name, c.kind) for c in changes] == [("a", "changed"), ("z", "added")]


def test_current_on_a_date():
    env = _env()
    assert current_on(env, dt.date(2025, 12, 31)) is None
    assert current_on(env, dt.date(2026, 1, 1)) == "v1"
    assert current_on(env, dt.date(2026, 3, 1)) == "v1"  # v3 was built but not yet current
    assert current_on(env, dt.date(2026, 3, 2)) == "v3"
