"""A build makes a version only when its lock's content differs from the current version's."""

from __future__ import annotations

import copy

import pytest

from asci.db import session_scope
from builder import build as build_module
from builder.errors import UpToDate
from builder.models import Environment, EnvironmentVersion, VersionStatus
from builder.uptodate import content_digest, same_content, up_to_date_with

LOCK = {
    "schema": 1, "environment": "imaging", "repo": "asci", "requested": ["imaging-tool"],
    "packages": [{"name": "imaging-tool", "nevra": "imaging-tool-3.2-1.noarch", "sha256": "a" * 64}],
    "base": {"name": "debian12-mate", "tag": "asci/base:1", "id": "sha256:" + "b" * 64},
    "recipe": {"commit": "c" * 40, "path": "environments/imaging.yaml", "sha256": "d" * 64, "dirty": False},
}


def changed(**parts) -> dict:
    lock = copy.deepcopy(LOCK)
    for key, value in parts.items():
        section, field = key.split("__")
        target = lock[section][0] if section == "packages" else lock[section]
        target[field] = value
    return lock


def test_a_recipe_commit_alone_changes_nothing_but_any_content_does():
    assert same_content(LOCK, changed(recipe__commit="e" * 40, recipe__dirty=True))
    assert content_digest(LOCK) == content_digest(changed(recipe__commit="e" * 40))
    for other in (changed(packages__sha256="f" * 64), changed(packages__nevra="imaging-tool-3.3-1.noarch"),
                  changed(base__id="sha256:" + "9" * 64), changed(recipe__sha256="0" * 64)):
        assert not same_content(LOCK, other)
        assert content_digest(LOCK) != content_digest(other)
    assert not same_content({}, LOCK)


def _record(settings, version, lock, *, current=True, status=VersionStatus.SUCCEEDED, deleted=False):
    from asci.db import utcnow

    with session_scope(settings) as db:
        env = db.query(Environment).filter_by(name="imaging").one_or_none()
        if env is None:
            env = Environment(name="imaging")
            db.add(env)
        db.add(EnvironmentVersion(environment=env, version=version, status=status, lock=lock,
                                  image_digest="sha256:" + "1" * 64, deleted_at=utcnow() if deleted else None))
        if current:
            env.current_version = version


def _up_to_date(settings, lock):
    with session_scope(settings) as db:
        row = up_to_date_with(db, "imaging", lock)
        return row.version if row else None


def test_only_the_current_still_pushed_version_counts(settings):
    assert _up_to_date(settings, LOCK) is None  # never built
    _record(settings, "2026.12.06.1", LOCK)
    assert _up_to_date(settings, changed(recipe__commit="e" * 40)) == "2026.12.06.1"
    assert _up_to_date(settings, changed(packages__sha256="f" * 64)) is None
    _record(settings, "2026.12.06.2", changed(packages__sha256="f" * 64))  # now current
    assert _up_to_date(settings, LOCK) is None  # the old content is not current any more
    _record(settings, "2026.12.06.3", LOCK, deleted=True)
    assert _up_to_date(settings, LOCK) is None  # a current version gc deleted does not count


def test_build_environment_stops_before_recording_unless_forced(settings, monkeypatch):
    from builder.build import Prepared
    from builder.recipes import load_recipe
    from asci.config import PROJECT_ROOT

    _record(settings, "2026.12.06.1", LOCK)
    recipe = load_recipe(PROJECT_ROOT / "recipes", "imaging")
    monkeypatch.setattr(build_module, "prepare", lambda *a, **k: Prepared(recipe, changed(recipe__commit="e" * 40)))
    started = []
    monkeypatch.setattr(build_module.versions, "start_version", lambda *a, **k: started.append(a) or 1 / 0)
    lines: list[str] = []
    with pytest.raises(UpToDate) as caught:
        build_module.build_environment(settings, "imaging", log=lines.append, client=object())
    assert caught.value.version == "2026.12.06.1" and str(caught.value) == "imaging is up to date: 2026.12.06.1"
    assert any("imaging is up to date: 2026.12.06.1" in line for line in lines)
    assert started == []  # nothing recorded
    with pytest.raises(ZeroDivisionError):  # --force goes on to allocate a version
        build_module.build_environment(settings, "imaging", log=lines.append, client=object(), force=True)
    assert len(started) == 1
