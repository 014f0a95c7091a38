"""Rebuild a recorded version from its stored lock and prove the same package set.

The recipe is read from the recipes repository at the recorded commit, the RPMs come from the
repository's ``all`` view (so packages published since, or retracted, change nothing), every
RPM's sha256 is checked inside the build, and the rebuilt image's ``rpm -qa`` must equal the lock.
The rebuilt image is tagged locally (``asci-reproduce/<env>:<version>``), never pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import git

from asci.config import Settings
from asci.db import session_scope
from asci.progress import LogSink
from builder import base_images, build, versions
from builder.errors import BuildError, LockError, VersionError
from builder.lock import check_against_index, lock_digest
from builder.models import VersionStatus
from builder.recipes import Recipe, parse_recipe
from builder.verify import compare_with_lock, inventory



@dataclass
class ReproduceResult:
    """What a reproduction proved."""

    environment: str
    version: str
    image: str
    image_id: str
    packages: list[str] = field(default_factory=list)  # NEVRAs installed, equal to the lock's
    sha256_checked: int = 0  # RPM files whose sha256 matched the lock inside the build
    dockerfile_identical: bool = False
    base_image_identical: bool = False

    def lines(self) -> list[str]:
        return [f"reproduced {self.environment} {self.version} as {self.image} ({self.image_id})",
                f"same package set: {len(self.packages)} NEVRAs, {self.sha256_checked} sha256 verified",
                *[f"  {n}" for n in self.packages],
                f"Dockerfile identical to the recorded one: {'yes' if self.dockerfile_identical else 'no'}",
                f"base image identical: {'yes' if self.base_image_identical else 'no (rebuilt base)'}"]


def recipe_at_commit(settings: Settings, lock: dict) -> Recipe:
    """The recipe as it was in the recorded commit (its sha256 must match the lock)."""
    import hashlib

    info = lock["recipe"]
    if info.get("dirty"):
        raise VersionError("the recipe had uncommitted changes when this version was built; cannot reproduce it")
    try:
        repo = git.Repo(settings.recipes_dir, search_parent_directories=True)
        text = repo.git.show(f"{info['commit']}:{info['path']}", strip_newline_in_stdout=False)
    except git.GitError as exc:
        raise VersionError(f"cannot read {info['path']} at commit {info['commit']}: {exc}") from None
    if info.get("sha256") and hashlib.sha256(text.encode()).hexdigest() != info["sha256"]:
        raise VersionError(f"{info['path']} at {info['commit'][:12]} differs from the recipe that was locked")
    return parse_recipe(text, f"{info['path']}@{info['commit'][:12]}", settings.recipes_dir)


def ensure_base(settings: Settings, client, lock: dict, log: LogSink) -> str:
    """The locked base image tag, rebuilt from its definition when missing and still the same."""
    tag = lock["base"]["tag"]
    from builder.docker_engine import image_exists

    if not image_exists(client, tag):
        definition = base_images.load_definition(settings.recipes_dir, lock["base"]["name"])
        if definition.image_tag != tag:
            raise VersionError(f"base image {tag} is gone and its definition changed (now {definition.image_tag})")
        base_images.build_base_image(definition, client, log=log)
    return client.images.get(tag).id


def reproduce(settings: Settings, name: str, version: str, log: LogSink = print, *, client=None,
              keep: bool = False) -> ReproduceResult:
    """Rebuild ``name`` ``version`` from its lock; raise unless the package set is identical."""
    with session_scope(settings) as db:
        row = versions.get_version(db, name, version)
        if row.status != VersionStatus.SUCCEEDED:
            raise VersionError(f"{name} {version} is {row.status}; only succeeded versions are reproduced")
        lock, recorded_dockerfile, created = row.lock, row.dockerfile, row.created_at
        stored_digest = row.lock_digest
    if stored_digest and lock_digest(lock) != stored_digest:
        raise LockError(f"{name} {version}: the stored lock does not match its recorded digest")
    client = client or build.client_for(settings)
    recipe = recipe_at_commit(settings, lock)
    check_against_index(settings, lock["repo"], lock["packages"])
    base_id = ensure_base(settings, client, lock, log)
    context = build.render_version(settings, recipe, lock, version, created)
    image = f"asci-reproduce/{name}:{version}"
    try:
        image_id = build.build_from_context(settings, client, context, lock["repo"], image, log)
        rpms, _debs = inventory(client, image)
        problems = compare_with_lock(rpms, lock)
        if problems:
            raise BuildError(f"reproduction of {name} {version} differs from its lock: {'; '.join(problems)}")
    except BaseException:
        build.remove_local(client, image)
        raise
    result = ReproduceResult(environment=name, version=version, image=image, image_id=image_id,
                             packages=sorted(p["nevra"] for p in rpms), sha256_checked=len(lock["packages"]),
                             dockerfile_identical=context.dockerfile == recorded_dockerfile,
                             base_image_identical=base_id == lock["base"]["id"])
    if not keep:
        build.remove_local(client, image)
    return result
