"""Turn repository change events and recipe commits into queued builds.

A recipe commit queues its environment; a recipe that was never built waits until every package it
names is published (that publication's event queues it), so a fresh platform does not fail builds of
recipes whose applications nobody published yet.

Repository events are read after the last id handled, kept in ``ci_cursors``: ``rpmrepo.events``
guarantees ids become visible in id order, so a plain last-id cursor misses none.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

import builder
import rpmrepo
from asci.config import Settings
from asci.nevra import package_name
from ci import queue
from ci.affected import affected_environments
from ci.models import CiCursor

EVENTS_CURSOR = "repo-events"


def _cursor(db: Session, name: str) -> CiCursor:
    cursor = db.get(CiCursor, name, with_for_update=True)
    if cursor is None:
        cursor = CiCursor(name=name, position="")
        db.add(cursor)
        db.flush()
    return cursor


def consume_repo_events(settings: Settings, db: Session, debounce_s: float, max_attempts: int = 3) -> list[str]:
    """Queue builds for environments affected by new repository events; returns their names."""
    cursor = _cursor(db, EVENTS_CURSOR)
    queued: list[str] = []
    for event in rpmrepo.events_after(db, int(cursor.position or 0), limit=500):
        names = {package_name(n) for n in event.packages or []} if event.repo != builder.ARCHIVE_REPO else set()
        for environment, hits in affected_environments(settings, db, names).items():
            if already_built(db, environment, event.created_at):
                continue  # the current version was locked after this event (the demo's own publish)
            reason = f"{event.kind} in {event.repo}: {', '.join(hits)} (event {event.id})"
            queue.enqueue(db, environment, reason, debounce_s=debounce_s, max_attempts=max_attempts)
            queued.append(environment)
        cursor.position = str(event.id)
    return sorted(set(queued))


def already_built(db: Session, environment: str, when) -> bool:
    """True when the current version of ``environment`` was locked after ``when`` (by a ci job)."""
    covered = queue.covered_until(db, environment, builder.current_version(db, environment))
    return covered is not None and when is not None and when < covered


def _recipe_commit(repo, path: Path) -> str | None:
    commit = next(repo.iter_commits(paths=str(path), max_count=1), None)
    return commit.hexsha if commit is not None else None


def consume_recipe_commits(settings: Settings, db: Session, debounce_s: float, max_attempts: int = 3) -> list[str]:
    """Queue a build for each recipe whose last commit changed since the previous look."""
    import git

    try:
        repo = git.Repo(settings.recipes_dir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return []
    queued = []
    for recipe in builder.list_recipes(settings.recipes_dir):
        commit = _recipe_commit(repo, Path(recipe.path).resolve())
        if commit is None:
            continue  # not committed yet: only commits trigger builds
        cursor = _cursor(db, f"recipe:{recipe.name}")
        if cursor.position == commit:
            continue
        built_from = builder.newest_lock(db, recipe.name).get("recipe", {}).get("commit")
        first_look = cursor.position == ""
        cursor.position = commit
        if first_look and built_from is not None and _same_recipe(repo, built_from, commit, recipe.path):
            continue  # already built from this recipe text
        if built_from is None and not _packages_published(settings, db, recipe):
            continue  # never built and its packages are not all published: their publication queues it
        queue.enqueue(db, recipe.name, f"recipe {recipe.name} changed (commit {commit[:10]})",
                      debounce_s=debounce_s, max_attempts=max_attempts)
        queued.append(recipe.name)
    return queued


def _packages_published(settings: Settings, db: Session, recipe: builder.Recipe) -> bool:
    """True when every package the recipe names is in the repository's current view."""
    published = {row.name for row in rpmrepo.list_packages(db, settings.default_repo)}
    return all(spec.name in published for spec in recipe.packages)


def _same_recipe(repo, old_commit: str, new_commit: str, path) -> bool:
    if old_commit == new_commit:
        return True
    relative = str(Path(path).resolve().relative_to(Path(repo.working_tree_dir).resolve()))
    try:
        return not repo.git.diff(old_commit, new_commit, "--", relative)
    except Exception:  # an unknown old commit (history rewritten): treat as changed
        return False
