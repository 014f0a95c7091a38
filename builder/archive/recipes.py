"""The recipe text a version was built from: from the recipes repository at the recorded commit, or
the copy an import kept (the commit lives in another facility's repository); checked by its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from asci.config import Settings
from builder.errors import VersionError


def kept_recipe_path(settings: Settings, name: str, version: str) -> Path:
    """Where ``asci env import`` keeps the recipe of an imported version."""
    return settings.data_dir / "archive" / "recipes" / name / f"{version}.yaml"


def recipe_text(settings: Settings, name: str, version: str, lock: dict) -> str:
    """The recipe of ``name`` ``version`` as locked; VersionError when neither source holds it."""
    import git

    info = lock["recipe"]
    if info.get("dirty"):
        raise VersionError(f"{name} {version}: the recipe had uncommitted changes when it was built")
    text, why = None, ""
    try:
        repo = git.Repo(settings.recipes_dir, search_parent_directories=True)
        text = repo.git.show(f"{info['commit']}:{info['path']}", strip_newline_in_stdout=False)
    except (git.GitError, ValueError) as exc:
        why = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        kept = kept_recipe_path(settings, name, version)
        if kept.is_file():
            text = kept.read_text()
    if text is None:
        raise VersionError(f"cannot read {info['path']} at commit {info['commit']}: {why}")
    if info.get("sha256") and hashlib.sha256(text.encode()).hexdigest() != info["sha256"]:
        raise VersionError(f"{info['path']} at {info['commit'][:12]} differs from the recipe that was locked")
    return text
