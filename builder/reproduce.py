"""Rebuild a recorded version from its stored lock and prove the same package set.

The recipe is read from the recipes repository at the recorded commit, the RPMs come from the
repository's ``all`` view (so packages published since, or retracted, change nothing), every
RPM's sha256 is checked inside the build, and the rebuilt image's ``rpm -qa`` must equal the lock.
The rebuilt image is tagged locally (``asci-reproduce/<env>:<version>``); with ``push`` it is
re-layered with the original's layout and pushed as ``<version>-r<N>``, and a :class:`Reproduction`
row records that its package set equals the original's and how many package layers have the
original's digest (all of them when the package bytes and the base are the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asci.config import Settings
from asci.db import session_scope
from asci.progress import LogSink
from builder import base_images, build, registry, versions
from builder.errors import BuildError, LockError, VersionError
from builder.lock import check_against_index, lock_digest
from builder.layers import Layout, relayer_image
from builder.models import Reproduction, VersionStatus
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
    pushed: str = ""  # registry/env:VERSION-rN@sha256:... when pushed
    layers_same: int = 0  # package layers with the original's digest
    layers_total: int = 0

    def lines(self) -> list[str]:
        pushed = [f"pushed as {self.pushed}",
                  f"package layers with the original's digest: {self.layers_same} of {self.layers_total}"] \
            if self.pushed else []
        return [f"reproduced {self.environment} {self.version} as {self.image} ({self.image_id})",
                f"same package set: {len(self.packages)} NEVRAs, {self.sha256_checked} sha256 verified",
                *[f"  {n}" for n in self.packages],
                f"Dockerfile identical to the recorded one: {'yes' if self.dockerfile_identical else 'no'}",
                f"base image identical: {'yes' if self.base_image_identical else 'no (rebuilt base)'}", *pushed]


def recipe_at_commit(settings: Settings, lock: dict, name: str = "", version: str = "") -> Recipe:
    """The recipe as it was in the recorded commit (or as an import kept it); its sha256 must match the lock."""
    from builder.archive.recipes import recipe_text

    info = lock["recipe"]
    text = recipe_text(settings, name or lock.get("environment", ""), version, lock)
    return parse_recipe(text, f"{info['path']}@{info['commit'][:12]}", settings.recipes_dir)


def package_source(settings: Settings, lock: dict) -> str:
    """The repository whose ``all`` view holds every locked RPM with its sha256: the lock's own, else
    the archive repository an import restored them into."""
    from builder.archive.restore import ARCHIVE_REPO

    try:
        check_against_index(settings, lock["repo"], lock["packages"])
        return lock["repo"]
    except LockError as exc:
        try:
            check_against_index(settings, ARCHIVE_REPO, lock["packages"])
        except LockError:
            raise exc from None
        return ARCHIVE_REPO


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


def next_reproduction_tag(settings: Settings, name: str, version: str) -> tuple[int, str]:
    """``(N, VERSION-rN)``: the next number not recorded and not a tag in the registry."""
    with session_scope(settings) as db:
        row = versions.get_version(db, name, version)
        number = max((r.number for r in row.reproductions), default=0) + 1
    taken = set(registry.list_tags(settings.registry, name))
    while f"{version}-r{number}" in taken:
        number += 1
    return number, f"{version}-r{number}"


def push_reproduction(settings: Settings, client, name: str, version: str, image: str, lock: dict, created,
                      layers: dict, same_packages: bool, log: LogSink) -> tuple[str, int, int]:
    """Re-layer the rebuilt ``image`` with the original's layout and push it as ``VERSION-rN``;
    record it. Returns (pull reference, package layers with the original's digest, package layers)."""
    original = Layout.from_json(layers)
    number, tag = next_reproduction_tag(settings, name, version)
    repository = f"{settings.registry}/{name}"
    result = relayer_image(client, registry.connect(settings), image, lock["base"]["tag"], name, tag, original,
                           created=build.created_label(created), max_layers=settings.builder_max_layers,
                           own_layer_min=settings.builder_own_layer_min_bytes,
                           max_dead_ratio=settings.builder_max_dead_ratio, log=log)
    for line in result.lines():
        log(line)
    build.check_pushed(client, f"{repository}@{result.digest}", f"{repository}:{tag}", result.listing, log,
                       result.checked)
    build.remove_local(client, f"{repository}:{tag}")
    before = {g.id: g.digest for g in original.groups} if original else {}
    same = sum(1 for g in result.layout.groups if before.get(g.id) == g.digest)
    with session_scope(settings) as db:
        row = versions.get_version(db, name, version)
        db.add(Reproduction(environment_version_id=row.id, number=number, tag=tag, image_digest=result.digest,
                            same_packages=same_packages, layers_same=same, layers_total=len(result.layout.groups)))
    return f"{repository}:{tag}@{result.digest}", same, len(result.layout.groups)


def reproduce(settings: Settings, name: str, version: str, log: LogSink = print, *, client=None,
              keep: bool = False, push: bool = False) -> ReproduceResult:
    """Rebuild ``name`` ``version`` from its lock; raise unless the package set is identical; with
    ``push``, push the rebuild as ``VERSION-rN`` and record it."""
    with session_scope(settings) as db:
        row = versions.get_version(db, name, version)
        if row.status != VersionStatus.SUCCEEDED:
            raise VersionError(f"{name} {version} is {row.status}; only succeeded versions are reproduced")
        lock, recorded_dockerfile, created = row.lock, row.dockerfile, row.created_at
        stored_digest, layers = row.lock_digest, row.layers
    if stored_digest and lock_digest(lock) != stored_digest:
        raise LockError(f"{name} {version}: the stored lock does not match its recorded digest")
    client = client or build.client_for(settings)
    recipe = recipe_at_commit(settings, lock, name, version)
    source = package_source(settings, lock)
    base_id = ensure_base(settings, client, lock, log)
    context = build.render_version(settings, recipe, lock, version, created)
    image = f"asci-reproduce/{name}:{version}"
    try:
        image_id = build.build_from_context(settings, client, context, source, image, log)
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
    try:
        if push:
            result.pushed, result.layers_same, result.layers_total = push_reproduction(
                settings, client, name, version, image, lock, created, layers, True, log)
    finally:
        if not keep:
            build.remove_local(client, image)
    return result
