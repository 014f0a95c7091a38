"""Version numbering, lookup by date and history (SQLite; no Docker)."""

from __future__ import annotations

import datetime as dt

import pytest

from asci.config import PROJECT_ROOT
from asci.db import session_scope
from builder import versions
from builder.errors import VersionError
from builder.models import EnvironmentVersion, VersionStatus
from builder.recipes import load_recipe

UTC = dt.timezone.utc


@pytest.fixture(autouse=True)
def no_registry(monkeypatch):
    """Unit tests never reach the registry: it holds no tags unless a test says so."""
    tags: dict[str, list[str]] = {}
    monkeypatch.setattr(versions.registry, "list_tags", lambda registry, name: tags.get(name, []))
    return tags


def test_version_key_sorts_numerically():
    listed = ["2026.11.25.10", "2026.11.25.9", "2025.12.31.1", "2026.11.25.1"]
    assert sorted(listed, key=versions.version_key) == ["2025.12.31.1", "2026.11.25.1", "2026.11.25.9",
                                                         "2026.11.25.10"]
    with pytest.raises(VersionError):
        versions.version_key("latest")


def test_next_version_counts_within_a_day_per_environment(settings):
    recipe = load_recipe(PROJECT_ROOT / "recipes", "imaging")
    today = dt.datetime.now(UTC).strftime("%Y.%m.%d")
    first = versions.start_version(settings, recipe, "base:1")
    second = versions.start_version(settings, recipe, "base:1")
    assert (first.version, second.version) == (f"{today}.1", f"{today}.2")
    other = versions.start_version(settings, load_recipe(PROJECT_ROOT / "recipes", "mx-crystallography"), "base:1")
    assert other.version == f"{today}.1"
    with session_scope(settings) as session:
        env = versions.find_environment(session, "imaging")
        assert versions.next_version(session, env, dt.date(2030, 1, 2)) == "2030.01.02.1"
        assert [r.version for r in versions.list_versions(session, "imaging")] == [f"{today}.1", f"{today}.2"]
        with pytest.raises(VersionError, match="has no version"):
            versions.get_version(session, "imaging", "2000.01.01.1")
        with pytest.raises(VersionError, match="unknown environment"):
            versions.list_versions(session, "nope")


def test_numbers_already_tagged_in_the_registry_are_skipped(settings, no_registry):
    today = dt.datetime.now(UTC).strftime("%Y.%m.%d")
    no_registry["imaging"] = [f"{today}.1", f"{today}.3", "latest", "2001.01.01.9"]
    row = versions.start_version(settings, load_recipe(PROJECT_ROOT / "recipes", "imaging"), "base:1")
    assert row.version == f"{today}.4"


def test_current_as_of_picks_the_version_current_then(settings):
    recipe = load_recipe(PROJECT_ROOT / "recipes", "imaging")
    rows = [versions.start_version(settings, recipe, "base:1") for _ in range(3)]
    stamps = [dt.datetime(2026, 3, 1, 12, tzinfo=UTC), dt.datetime(2026, 6, 1, 12, tzinfo=UTC), None]
    for row, stamp in zip(rows, stamps):
        versions.update_version(settings, row.id, status=VersionStatus.SUCCEEDED, became_current_at=stamp)
    with session_scope(settings) as session:
        at = lambda text: versions.current_as_of(session, "imaging", versions.parse_when(text)).version  # noqa: E731
        assert at("2026-03-01") == rows[0].version
        assert at("2026-05-31") == rows[0].version
        assert at("2026-06-01T12:00:00+00:00") == rows[1].version
        assert at("2027-01-01") == rows[1].version
        with pytest.raises(VersionError, match="no current version"):
            at("2026-02-28")
    with pytest.raises(VersionError, match="not a date"):
        versions.parse_when("yesterday")


def test_promote_refuses_a_version_that_did_not_succeed(settings):
    row = versions.start_version(settings, load_recipe(PROJECT_ROOT / "recipes", "imaging"), "base:1")
    with pytest.raises(VersionError, match="is building"):
        versions.promote(settings, "imaging", row.version)
    with session_scope(settings) as session:
        assert session.get(EnvironmentVersion, row.id).environment.current_version is None
