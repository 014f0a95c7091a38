"""Which environments a change of packages affects.

An environment is affected by a package name when its recipe asks for it, when its newest
version's lock contains it, or when it is reachable from the recipe's packages through the
requires/provides of our own RPMs (``rpmrepo.dependency_closure``): a new ``mx-lib`` affects an
environment that installs ``mx-process``, which requires it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

import builder
import rpmrepo
from asci.config import Settings


def environment_packages(settings: Settings, db: Session, recipe: builder.Recipe) -> set[str]:
    """Names of every package of ours the environment installs or would install."""
    lock = builder.newest_lock(db, recipe.name)
    repo = lock.get("repo") or settings.default_repo
    names = {p.name for p in recipe.packages} | {p["name"] for p in lock.get("packages", [])}
    return names | rpmrepo.dependency_closure(db, repo, names)


def affected_environments(settings: Settings, db: Session, changed: set[str]) -> dict[str, list[str]]:
    """Map each affected environment to the changed package names that affect it."""
    result: dict[str, list[str]] = {}
    for recipe in builder.list_recipes(settings.recipes_dir):
        hits = sorted(changed & environment_packages(settings, db, recipe))
        if hits:
            result[recipe.name] = hits
    return result
