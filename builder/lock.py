"""Resolve a recipe into a lock: exact NEVRA + sha256 of every RPM, base image, recipe commit.

Resolution is dnf's own: ``dnf install --downloadonly`` into an empty, throw-away install root
against the repository's ``current`` view, so dependencies between our RPMs are solved exactly
as the image build will solve them. The downloaded files are read with ``rpm -qp`` and hashed.
The lock is a JSON document; its digest is the SHA-256 of its canonical form.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from pathlib import Path

from asci.config import Settings
from asci.db import session_scope
from asci.nevra import Nevra
from asci.progress import LogSink, discard
from builder.errors import LockError
from builder.recipes import Recipe

LOCK_SCHEMA = 1
_QF = "%{NAME}|%{EPOCHNUM}|%{VERSION}|%{RELEASE}|%{ARCH}\\n"


def canonical_json(document: dict) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def lock_digest(lock: dict) -> str:
    """SHA-256 (hex) of the lock's canonical JSON."""
    return hashlib.sha256(canonical_json(lock).encode()).hexdigest()


def nevra_of(pkg: dict) -> str:
    """The NEVRA string of a lock entry."""
    return str(Nevra.of(pkg))


def dnf_command(root: Path, baseurl: str, *args: str) -> list[str]:
    """dnf confined to ``root`` (install root and cache) and one repository; never the system's."""
    return ["dnf", "-y", f"--installroot={root / 'root'}", f"--setopt=cachedir={root / 'cache'}",
            "--setopt=reposdir=/dev/null", "--setopt=install_weak_deps=False", "--setopt=metadata_expire=0",
            "--setopt=keepcache=False", "--releasever=12", "--nogpgcheck", "--noplugins",
            f"--repofrompath=asci,{baseurl}", "--repo=asci", *args]


def _unknown_packages(output: str) -> list[str]:
    return re.findall(r"No match for argument: (\S+)", output)


def resolve_packages(repo_dir: Path, specs: list[str], repo_label: str = "repository") -> list[dict]:
    """Resolve ``specs`` with dnf against the dnf repository folder ``repo_dir``."""
    if not (repo_dir / "repodata" / "repomd.xml").is_file():
        raise LockError(f"{repo_label} has no metadata yet at {repo_dir} (publish packages first)")
    with tempfile.TemporaryDirectory(prefix="asci-lock-") as tmp:
        root, downloads = Path(tmp), Path(tmp) / "rpms"
        cmd = dnf_command(root, repo_dir.as_uri(), "install", "--downloadonly", f"--downloaddir={downloads}", *specs)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        output = proc.stdout + proc.stderr
        unknown = _unknown_packages(output)
        if unknown:
            raise LockError(f"unknown package(s) in {repo_label}: {', '.join(unknown)}")
        if proc.returncode != 0:
            lines = [l for l in output.strip().splitlines() if l.strip()][-6:]
            raise LockError(f"dnf cannot resolve {' '.join(specs)} in {repo_label}: " + " | ".join(lines))
        packages = []
        for path in sorted(downloads.glob("*.rpm")):
            query = subprocess.run(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", _QF, str(path)],
                                   capture_output=True, text=True, check=True)
            name, epoch, version, release, arch = query.stdout.strip().split("|")
            packages.append({"name": name, "epoch": int(epoch), "version": version, "release": release,
                             "arch": arch, "filename": path.name, "size": path.stat().st_size,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    if not packages:
        raise LockError(f"dnf resolved nothing for {' '.join(specs)} in {repo_label}")
    for pkg in packages:
        pkg["nevra"] = nevra_of(pkg)
    return sorted(packages, key=lambda p: (p["name"], p["arch"]))


def check_against_index(settings: Settings, repo: str, packages: list[dict]) -> None:
    """Every locked package must be in the repository index with the same sha256."""
    import rpmrepo

    with session_scope(settings) as db:
        for pkg in packages:
            row = rpmrepo.find_package(db, repo, Nevra.of(pkg))
            if row is None:
                raise LockError(f"{pkg['nevra']} is not in the index of repository {repo!r}")
            if row.sha256 != pkg["sha256"]:
                raise LockError(f"{pkg['nevra']}: sha256 {pkg['sha256']} differs from the index ({row.sha256})")


def recipe_commit(recipe: Recipe, recipes_dir: Path) -> dict:
    """The git commit of the recipes repository, the recipe's path in it and whether it is dirty."""
    import git

    try:
        repo = git.Repo(recipes_dir, search_parent_directories=True)
        commit = repo.head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError) as exc:
        raise LockError(f"recipes folder {recipes_dir} is not in a git repository with a commit: {exc}") from None
    path = Path(recipe.path).resolve() if recipe.path else None
    relative = str(path.relative_to(Path(repo.working_tree_dir).resolve())) if path else ""
    dirty = bool(relative) and (repo.is_dirty(path=relative) or relative in repo.untracked_files)
    return {"commit": commit, "path": relative, "sha256": recipe.text_sha256, "dirty": dirty}


def make_lock(recipe: Recipe, repo: str, packages: list[dict], base: dict, recipe_info: dict) -> dict:
    """The lock document (no timestamps: the same inputs give the same digest)."""
    return {
        "schema": LOCK_SCHEMA,
        "environment": recipe.name,
        "repo": repo,
        "requested": [p.dnf_spec for p in recipe.packages],
        "packages": packages,
        "base": base,
        "recipe": recipe_info,
    }


def lock_recipe(settings: Settings, recipe: Recipe, base: dict, repo: str | None = None,
                log: LogSink = discard) -> dict:
    """Resolve ``recipe`` against the ``current`` view of ``repo`` into a lock document."""
    import rpmrepo

    repo = repo or settings.default_repo
    repo_dir = rpmrepo.repo_path(settings, repo, "current")
    log(f"resolving {', '.join(p.dnf_spec for p in recipe.packages)} against {repo}/current")
    packages = resolve_packages(repo_dir, [p.dnf_spec for p in recipe.packages], f"repository {repo!r}")
    check_against_index(settings, repo, packages)
    for pkg in packages:
        log(f"  locked {pkg['nevra']} sha256:{pkg['sha256'][:16]}")
    return make_lock(recipe, repo, packages, base, recipe_commit(recipe, settings.recipes_dir))
