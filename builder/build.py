"""Build an environment version: lock → render → docker build → verify → push → record.

``build_environment`` leaves the new version ``succeeded`` but not current; ``versions.promote``
makes it current (moves ``latest``). Nothing is tagged in the registry before verification, and
a failed build removes its local image and records the error and log in its version row.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from docker.errors import ImageNotFound

from asci.config import Settings
from asci.db import session_scope, utcnow
from asci.errors import AsciError
from asci.progress import LogSink
from builder import base_images, docker_engine, registry, render, versions
from builder.errors import BuildError, UpToDate, VerifyError, VersionError
from builder.layers import Layout, relayer_image
from builder.layers.snapshot import listing, listing_of
from builder.layers.tree import compare_listings
from builder.lock import lock_digest, lock_recipe
from builder.models import EnvironmentVersion, VersionStatus
from builder.recipes import Recipe, load_recipe
from builder.records import gittags
from builder.serve import serve_folder
from builder.uptodate import up_to_date_with
from builder.verify import verify_image



@dataclass
class Prepared:
    """A validated recipe with its lock."""

    recipe: Recipe
    lock: dict

    @property
    def digest(self) -> str:
        return lock_digest(self.lock)


def client_for(settings: Settings):
    return docker_engine.client_for(settings.docker_hosts[0])


def base_image(settings: Settings, client, name: str, log: LogSink) -> dict:
    """The base image of a recipe (built when missing): name, tag and image id."""
    definition = base_images.load_definition(settings.recipes_dir, name)
    tag = base_images.build_base_image(definition, client, log=log)
    return {"name": name, "tag": tag, "id": client.images.get(tag).id}


def prepare(settings: Settings, name: str, client=None, log: LogSink = print) -> Prepared:
    """Load and validate the recipe, make sure its base exists, resolve its lock."""
    recipe = load_recipe(settings.recipes_dir, name)
    client = client or client_for(settings)
    base = base_image(settings, client, recipe.base, log)
    return Prepared(recipe, lock_recipe(settings, recipe, base, log=log))


def source_label(settings: Settings, lock: dict) -> str:
    """``org.opencontainers.image.source``: the recipes repository (origin URL or folder) and path."""
    import git

    try:
        repo = git.Repo(settings.recipes_dir, search_parent_directories=True)
        origin = next((r.url for r in repo.remotes if r.name == "origin"), None)
        where = origin or Path(repo.working_tree_dir).as_uri()
    except git.GitError:
        return ""
    return f"{where}#{lock['recipe'].get('path', '')}"


def created_label(when) -> str:
    import datetime as dt

    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_version(settings: Settings, recipe: Recipe, lock: dict, version: str, created) -> render.BuildContext:
    return render.render(recipe, lock, version, created_label(created), lock["base"]["tag"],
                         source=source_label(settings, lock))


def build_from_context(settings: Settings, client, context: render.BuildContext, repo: str, tag: str,
                       log: LogSink) -> str:
    """docker build of ``context`` with our repository's ``all`` view served on 127.0.0.1."""
    import rpmrepo

    with tempfile.TemporaryDirectory(prefix="asci-env-") as folder, \
            serve_folder(rpmrepo.repo_path(settings, repo, "all")) as repo_url:
        context.write(Path(folder))
        log(f"building {tag} (repository served at {repo_url})")
        return docker_engine.build_image(client, folder, tag, log, buildargs={"ASCI_REPO_URL": repo_url})


def remove_local(client, reference: str) -> None:
    """Remove a local image tag, ignoring one that is not there."""
    try:
        client.images.remove(reference, noprune=False)
    except ImageNotFound:
        pass


def _withdraw_push(settings: Settings, client, name: str, version: str, reference: str, digest: str) -> None:
    """Delete what this build pushed: by its digest, or by tag only when the tag is this image's."""
    target = registry.connect(settings)
    if not digest:
        tagged = registry.manifest_digest(target, name, version)
        try:
            ours = client.images.get(reference).attrs.get("RepoDigests") or []
        except ImageNotFound:
            ours = []
        if tagged is None or not any(item.endswith("@" + tagged) for item in ours):
            return  # nothing pushed, or the tag holds another build's image: not ours to delete
        digest = tagged
    registry.delete_manifest(target, name, digest)


def previous_layout(settings: Settings, name: str) -> Layout | None:
    """The layout nodes hold: the current version's, else the newest succeeded version's that has one."""
    with session_scope(settings) as db:
        return Layout.from_json(versions.layout_to_follow(db, name))


def check_pushed(client, pull_reference: str, reference: str, built: dict, log: LogSink,
                 paths: set[str] | None = None) -> None:
    """Pull the pushed image back and compare its paths with the verified build (type, mode, owner,
    size, mtime to the second, link target; directory times aside): every path when ``paths`` is None,
    else those (the paths the layers of ours hold or delete; the others are the base's layers).
    Leaves it tagged ``reference`` locally."""
    log(f"pulling {pull_reference} back to compare it with the verified build")
    image = docker_engine.pull_image(client, pull_reference, log)
    image.tag(*reference.rsplit(":", 1))
    if paths is None:
        expected, actual = built, listing(client, pull_reference)
    else:
        expected, actual = {p: built[p] for p in paths if p in built}, listing_of(client, pull_reference, paths)
    problems = compare_listings(expected, actual)
    if problems:
        raise VerifyError(f"the pushed image differs from the verified build in {len(problems)} paths: "
                          + "; ".join(problems[:5]))
    log(f"pushed image holds the same {len(expected)} paths as the verified build"
        + (f" where its layers decide ({len(paths) - len(expected)} deleted)" if paths is not None else ""))


def push_version(settings: Settings, client, recipe: Recipe, lock: dict, version: str, build_tag: str,
                 created, log: LogSink) -> tuple[str, dict]:
    """Push the verified ``build_tag`` as ``recipe.name:version``: re-layered by package (default) or as
    built. Returns the manifest digest and the layout to record (empty when not layered)."""
    target = registry.connect(settings)
    repository = f"{settings.registry}/{recipe.name}"
    reference = f"{repository}:{version}"
    if not settings.builder_layered:
        client.images.get(build_tag).tag(repository, version)
        pushing = f"{target.docker_push_host}/{recipe.name}"
        if pushing != repository:  # Docker's pushes go to the endpoint that challenges for credentials
            client.images.get(build_tag).tag(pushing, version)
        try:
            return docker_engine.push_image(client, pushing, version, log, auth=target.auth), {}
        finally:
            if pushing != repository:
                remove_local(client, f"{pushing}:{version}")
    result = relayer_image(client, target, build_tag, lock["base"]["tag"], recipe.name, version,
                           previous_layout(settings, recipe.name), created=created_label(created),
                           max_layers=settings.builder_max_layers,
                           own_layer_min=settings.builder_own_layer_min_bytes,
                           max_dead_ratio=settings.builder_max_dead_ratio, log=log)
    for line in result.lines():
        log(line)
    try:
        check_pushed(client, f"{repository}@{result.digest}", reference, result.listing, log, result.checked)
    except BaseException:
        registry.delete_manifest(target, recipe.name, result.digest)  # never leave an unchecked version
        raise
    record = result.layout.to_json()
    record.update(reused=result.reused, uploaded_bytes=result.uploaded_bytes, pull_bytes=result.pull_bytes,
                  timings=result.timings)
    return result.digest, record


def check_changed(settings: Settings, name: str, lock: dict, log: LogSink) -> None:
    """Raise :class:`UpToDate` when ``lock`` holds what the current version of ``name`` holds."""
    with session_scope(settings) as db:
        same = up_to_date_with(db, name, lock)
        version = same.version if same is not None else None
    if version is not None:
        log(f"{name} is up to date: {version} (same packages, base image and recipe; no new version)")
        raise UpToDate(name, version)


def build_environment(settings: Settings, name: str, log: LogSink = print, *, client=None,
                      promote: bool = False, force: bool = False) -> EnvironmentVersion:
    """Build, verify, push and record a new version of environment ``name``.

    When the lock equals the current version's, raises :class:`UpToDate` and records nothing,
    unless ``force``. Bad recipes and unresolvable packages raise before anything is recorded.
    Later failures leave a ``failed`` version row (with log and error) and no image or registry tag.
    """
    client = client or client_for(settings)
    lines: list[str] = []

    def sink(line: str) -> None:
        lines.append(line)
        log(line)

    prepared = prepare(settings, name, client, sink)
    recipe, lock = prepared.recipe, prepared.lock
    if not force:
        check_changed(settings, recipe.name, lock, sink)
    row = versions.start_version(settings, recipe, lock["base"]["tag"], lock=lock, lock_digest=prepared.digest,
                                 recipe_commit=lock["recipe"]["commit"])
    version = row.version
    repository = f"{settings.registry}/{recipe.name}"
    reference = f"{repository}:{version}"
    build_tag = f"asci-build/{recipe.name}:{version}"  # local only: what is pushed is the verified re-layering
    pushed, digest = False, ""
    try:
        if registry.tag_exists(settings.registry, recipe.name, version):
            raise VersionError(f"{reference} already exists in the registry; a pushed version is immutable")
        context = render_version(settings, recipe, lock, version, row.created_at)
        versions.update_version(settings, row.id, dockerfile=context.dockerfile, image_reference=reference)
        image_id = build_from_context(settings, client, context, lock["repo"], build_tag, sink)
        versions.update_version(settings, row.id, status=VersionStatus.VERIFYING, image_id=image_id)
        sbom = verify_image(client, build_tag, lock, recipe.checks, sink)
        if registry.tag_exists(settings.registry, recipe.name, version):
            raise VersionError(f"{reference} appeared in the registry during the build; refusing to overwrite it")
        sink(f"pushing {reference}")
        pushed = True
        digest, layers = push_version(settings, client, recipe, lock, version, build_tag, row.created_at, sink)
        sink(f"pushed {reference} as {digest}")
        remove_local(client, build_tag)
        tag = gittags.tag_version(settings.recipes_dir, recipe.name, version, lock["recipe"]["commit"],
                                  f"{recipe.name} {version}\n\nimage {repository}@{digest}\n"
                                  f"lock sha256:{prepared.digest}\n")
        sink(f"git tag {tag}")
        row = versions.update_version(settings, row.id, status=VersionStatus.SUCCEEDED, image_digest=digest, sbom=sbom,
                                      layers=layers, build_log="\n".join(lines) + "\n", finished_at=utcnow())
    except BaseException as exc:
        sink(f"build of {reference} failed: {exc}")
        try:
            if pushed:
                _withdraw_push(settings, client, recipe.name, version, reference, digest)
            remove_local(client, reference)
            remove_local(client, build_tag)
        except Exception as cleanup:  # noqa: BLE001 - report, but keep the build's own error
            sink(f"cleanup after the failed build: {cleanup}")
        finally:
            versions.update_version(settings, row.id, status=VersionStatus.FAILED, error=str(exc) or type(exc).__name__,
                                    build_log="\n".join(lines) + "\n", finished_at=utcnow())
        if isinstance(exc, AsciError) or not isinstance(exc, Exception):
            raise
        raise BuildError(f"build of {reference} failed: {exc}") from exc
    if promote:
        row = versions.promote(settings, recipe.name, version)
        log(f"{recipe.name} {version} is now current (latest)")
    return row
