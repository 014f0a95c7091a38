"""A git tag ``<environment>/<version>`` in the recipes repository for every pushed version."""

from __future__ import annotations

import os
from pathlib import Path

import git

from builder.errors import BuildError

_IDENTITY = {"GIT_COMMITTER_NAME": "ASCI builder", "GIT_COMMITTER_EMAIL": "asci-builder@localhost",
             "GIT_AUTHOR_NAME": "ASCI builder", "GIT_AUTHOR_EMAIL": "asci-builder@localhost"}


def tag_name(environment: str, version: str) -> str:
    return f"{environment}/{version}"


def tag_version(recipes_dir: Path, environment: str, version: str, commit: str, message: str) -> str:
    """Create the annotated tag at ``commit``; an existing tag on another commit is an error."""
    name = tag_name(environment, version)
    try:
        repo = git.Repo(recipes_dir, search_parent_directories=True)
        if name in repo.tags:
            if repo.tags[name].commit.hexsha != commit:
                raise BuildError(f"git tag {name} already exists on another commit")
            return name
        env = {key: value for key, value in _IDENTITY.items() if not os.environ.get(key)}
        repo.git.tag("-a", name, commit, "-m", message, env={**os.environ, **env})
    except git.GitError as exc:
        raise BuildError(f"cannot tag {name} in {recipes_dir}: {exc}") from None
    return name


def tag_commit(recipes_dir: Path, environment: str, version: str) -> str | None:
    """The commit the version's tag points at, or None."""
    repo = git.Repo(recipes_dir, search_parent_directories=True)
    name = tag_name(environment, version)
    return repo.tags[name].commit.hexsha if name in repo.tags else None
