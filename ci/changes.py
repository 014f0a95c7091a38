"""Turn repository change events and recipe commits into queued builds.

Repository events are read after the last id handled, kept in ``ci_cursors``: ``rpmrepo.events``
guarantees ids become visible in id order, so a plain last-id cursor misses none.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from asci.config import Settings
from builder.recipes import list_recipes
from ci import queue
from ci.affected import affected_environments
from ci.models import CiCursor
from rpmrepo.events import events_after

EVENTS_CURSOR = "repo-events"


def _cursor(session: Session, name: str) -> CiCursor:
    cursor = session.get(CiCursor, name, with_for_update=True)
    if cursor is None:
        cursor = CiCursor(name=name, position="")
        session.add(cursor)
        session.flush()
    return cursor


def _package_name(nevra: str) -> str:
    """``mx-lib-1:2.1-1.noarch`` → ``mx-lib`` (name is everything before version-release)."""
    without_arch = nevra.rsplit(".", 1)[0]
    return without_arch.rsplit("-", 2)[0]


def consume_repo_events(session: Session, settings: Settings, debounce_s: float, max_attempts: int = 3) -> list[str]:
    """Queue builds for environments affected by new repository events; returns their names."""
    cursor = _cursor(session, EVENTS_CURSOR)
    queued: list[str] = []
    for event in events_after(session, int(cursor.position or 0), limit=500):
        names = {_package_name(n) for n in event.packages or []}
        for environment, hits in affected_environments(session, settings, names).items():
            reason = f"{event.kind} in {event.repo}: {', '.join(hits)} (event {event.id})"
            queue.enqueue(session, environment, reason, debounce_s=debounce_s, max_attempts=max_attempts)
            queued.append(environment)
        cursor.position = str(event.id)
    return sorted(set(queued))


def _recipe_commit(repo, path: Path) -> str | None:
    commit = next(repo.iter_commits(paths=str(path), max_count=1), None)
    return commit.hexsha if commit is not None else None


def consume_recipe_commits(session: Session, settings: Settings, debounce_s: float, max_attempts: int = 3) -> list[str]:
    """Queue a build for each recipe whose last commit changed since the previous look."""
    import git

    try:
        repo = git.Repo(settings.recipes_dir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return []
    from ci.affected import newest_lock

    queued = []
    for recipe in list_recipes(settings.recipes_dir):
        commit = _recipe_commit(repo, Path(recipe.path).resolve())
        if commit is None:
            continue  # not committed yet: only commits trigger builds
        cursor = _cursor(session, f"recipe:{recipe.name}")
        if cursor.position == commit:
            continue
        built_from = newest_lock(session, recipe.name).get("recipe", {}).get("commit")
        first_look = cursor.position == ""
        cursor.position = commit
        if first_look and built_from is not None and _same_recipe(repo, built_from, commit, recipe.path):
            continue  # already built from this recipe text
        queue.enqueue(session, recipe.name, f"recipe {recipe.name} changed (commit {commit[:10]})",
                      debounce_s=debounce_s, max_attempts=max_attempts)
        queued.append(recipe.name)
    return queued


def _same_recipe(repo, old_commit: str, new_commit: str, path) -> bool:
    if old_commit == new_commit:
        return True
    relative = str(Path(path).resolve().relative_to(Path(repo.working_tree_dir).resolve()))
    try:
        return not repo.git.diff(old_commit, new_commit, "--", relative)
    except Exception:  # an unknown old commit (history rewritten): treat as changed
        return False
