"""Which versions ``asci registry gc`` deletes: failed or never promoted, older than the retention,
never ever-current, never protected (sessions, running jobs), nothing while a build runs."""

from __future__ import annotations

import datetime as dt

import pytest

from asci.db import session_scope
from builder import gc
from builder.errors import BuildError
from builder.models import Environment, EnvironmentVersion, VersionStatus

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone.utc)


def _versions(settings, rows):
    with session_scope(settings) as db:
        env = Environment(name="mx", current_version="2026.10.01.1")
        db.add(env)
        db.flush()
        for version, status, age_days, ever_current in rows:
            db.add(EnvironmentVersion(environment_id=env.id, version=version, status=status,
                                      image_reference=f"127.0.0.1:5000/mx:{version}",
                                      image_digest="" if version.endswith(".9") else "sha256:" + version[-1] * 64,
                                      created_at=NOW - dt.timedelta(days=age_days),
                                      became_current_at=NOW if ever_current else None))


def test_plan_deletes_only_old_failed_or_never_promoted_unprotected_versions(settings):
    settings = settings.replace(registry_gc_keep_days=14)
    _versions(settings, [
        ("2026.09.01.1", VersionStatus.SUCCEEDED, 80, True),   # was current once: kept forever
        ("2026.09.02.1", VersionStatus.SUCCEEDED, 80, False),  # never promoted, old: deleted
        ("2026.09.03.2", VersionStatus.FAILED, 80, False),     # failed after its push (the gate): deleted
        ("2026.09.03.9", VersionStatus.FAILED, 80, False),     # failed before pushing: nothing to delete
        ("2026.09.04.1", VersionStatus.SUCCEEDED, 80, False),  # a session launched it: kept
        ("2026.10.01.1", VersionStatus.SUCCEEDED, 60, False),  # current (promotion time unrecorded): kept
        ("2026.11.20.1", VersionStatus.SUCCEEDED, 5, False),   # younger than the retention: kept
    ])
    doomed = gc.plan(settings, {("mx", "2026.09.04.1")}, now=NOW)
    assert [(d.version, d.status) for d in doomed] == [("2026.09.02.1", "succeeded"), ("2026.09.03.2", "failed")]
    assert [d.version for d in gc.plan(settings.replace(registry_gc_keep_days=100), set(), now=NOW)] == []


def test_plan_refuses_while_a_build_runs(settings):
    _versions(settings, [("2026.11.25.1", VersionStatus.BUILDING, 0, False)])
    with pytest.raises(BuildError, match="being built"):
        gc.plan(settings, set(), now=NOW)


def test_report_lines_say_what_was_reclaimed():
    report = gc.GcReport([gc.Doomed(1, "mx", "2026.09.02.1", "succeeded", "sha256:" + "2" * 64, ["sha256:x"])],
                         dry_run=False, blobs_deleted=3, bytes_before=50 * 2**20, bytes_after=20 * 2**20)
    text = "\n".join(report.lines())
    assert "deleted mx:2026.09.02.1 (succeeded" in text and "1 reproductions" in text
    assert "3 blobs deleted; storage 50.0 → 20.0 MiB, reclaimed 30.0 MiB" in text
