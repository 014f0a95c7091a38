"""Which environments a change of packages affects.

An environment is affected by a package name when its recipe asks for it, when its newest
version's lock contains it, or when it is reachable from the recipe's packages through the
requires/provides of our own RPMs (the repository index): a new ``mx-lib`` affects an
environment that installs ``mx-process``, which requires it.
"""

from __future__ import annotations

import re
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.config import Settings
from builder.models import SUCCEEDED, Environment, EnvironmentVersion
from builder.recipes import Recipe, list_recipes
from rpmrepo.models import RpmPackage

_NAME = re.compile(r"^\s*([^\s<>=()]+)")


def capability_name(capability: str) -> str:
    """``mx-lib >= 1:2.0`` → ``mx-lib``."""
    match = _NAME.match(capability)
    return match.group(1) if match else capability.strip()


def dependency_closure(session: Session, repo: str, names: set[str]) -> set[str]:
    """Every package name reachable from ``names`` through requires → provides in ``repo``."""
    providers: dict[str, set[str]] = defaultdict(set)
    requires: dict[str, set[str]] = defaultdict(set)
    for package in session.scalars(select(RpmPackage).where(RpmPackage.repo == repo)):
        providers[package.name].add(package.name)
        for capability in package.provides or []:
            providers[capability_name(capability)].add(package.name)
        requires[package.name].update(capability_name(c) for c in package.requires or [])
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for capability in requires.get(name, ()):
            pending.extend(providers.get(capability, ()) - seen)
    return seen


def newest_lock(session: Session, environment: str) -> dict:
    """The lock of the environment's newest successful version ({} when it has none)."""
    version = session.scalar(
        select(EnvironmentVersion).join(Environment)
        .where(Environment.name == environment, EnvironmentVersion.status == SUCCEEDED)
        .order_by(EnvironmentVersion.id.desc()).limit(1))
    return version.lock if version is not None else {}


def environment_packages(session: Session, settings: Settings, recipe: Recipe) -> set[str]:
    """Names of every package of ours the environment installs or would install."""
    lock = newest_lock(session, recipe.name)
    repo = lock.get("repo") or settings.default_repo
    names = {p.name for p in recipe.packages} | {p["name"] for p in lock.get("packages", [])}
    return names | dependency_closure(session, repo, names)


def affected_environments(session: Session, settings: Settings, changed: set[str]) -> dict[str, list[str]]:
    """Map each affected environment to the changed package names that affect it."""
    result: dict[str, list[str]] = {}
    for recipe in list_recipes(settings.recipes_dir):
        hits = sorted(changed & environment_packages(session, settings, recipe))
        if hits:
            result[recipe.name] = hits
    return result
