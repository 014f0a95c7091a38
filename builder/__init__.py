"""Builder: recipe + repository → lock → Dockerfile → image → registry → recorded version.

Also builds the base desktop images from ``recipes/base``. The public face, for ``broker``,
``ci`` and ``web`` (nothing else of this package is theirs to import)::

    build_environment(settings, name, log=print, *, client=None, promote=False, force=False) -> EnvironmentVersion
        # raises UpToDate (.version) when the lock equals the current version's, unless force
    promote(settings, name, version) -> EnvironmentVersion          # moves latest, sets current
    fail_version(settings, version_id, error); fail_unfinished_versions(settings, name, reason) -> int
    reproduce(settings, name, version, log=print, *, client=None, keep=False) -> ReproduceResult
    load_recipe(recipes_dir, name) -> Recipe;  list_recipes(recipes_dir) -> list[Recipe]
    Recipe.resources -> ResourceDefaults    # the environment's session guarantee/limit defaults
    launchable_version(db, environment, version="current") -> LaunchableVersion
    environment_summaries(db, ids=None); environment_ids(db, names); current_version(db, name)
    current_images(db); recent_versions(db, limit); version_record(db, version_id); newest_lock(db, name)
    version_history(db, name) -> list[VersionRow];  current_on(db, name, day) -> str | None
    diff_locks(old_lock, new_lock) -> LockDiff
    rootfs_image(client, suite, variant, mirror, log);  apt_mirror(suite);  client_for(docker_url)
    build_platform_image(client, log, stage) -> tag   # the compose deployment's image (asci deploy image)
    registry_gc(settings, protected, dry_run=False, log=print) -> GcReport   # protected: {(env, version)}
    setup_registry(settings, listen, push_listen, user) -> RegistryFiles      # proxy, registry config, credentials
    export_version(settings, name, version, target, log); verify_archive(path, log); import_archive(settings, path, log)
    ARCHIVE_REPO    # the repository imported versions' RPMs live in (ci builds nothing from it)
    citation_of(db, env, version, landing_url) -> Citable; find_identifier(db, identifier, landing_url) -> Citable
    render_citation(citable, fmt) -> str  # fmt in CITATION_FORMATS (cff, bibtex, datacite); persistent_id(...)

Rows returned (``EnvironmentVersion``) are for reading; every write goes through these functions.
"""

from builder.apt_sources import apt_mirror
from builder.archive import ARCHIVE_REPO, export_version, import_archive, verify_archive
from builder.base_images import rootfs_image
from builder.build import build_environment
from builder.docker_engine import client_for
from builder.citation import FORMATS as CITATION_FORMATS
from builder.citation import MEDIA_TYPES as CITATION_MEDIA_TYPES
from builder.citation import Citable, citation_of, find_identifier, persistent_id
from builder.citation import render as render_citation
from builder.catalog import (EnvironmentSummary, LaunchableVersion, current_images, current_version,
                             environment_ids, environment_summaries, launchable_version, newest_lock,
                             recent_versions, version_record)
from builder.diff import LockDiff, diff_locks
from builder.gc import GcReport
from builder.gc import gc as registry_gc
from builder.registry_setup import RegistryFiles
from builder.registry_setup import setup as setup_registry
from builder.errors import (BuildError, DockerError, LockError, NotLaunchable, RecipeError, UnknownVersion,
                            UpToDate, VersionError, ArchiveError)
from builder.history import Change, VersionRow, current_on, version_history
from builder.models import VersionStatus
from builder.platform_image import build_platform_image
from builder.recipes import Recipe, ResourceDefaults, list_recipes, load_recipe
from builder.reproduce import reproduce
from builder.rpmvercmp import label_compare, rpmvercmp
from builder.versions import fail_unfinished_versions, fail_version, promote

__all__ = [
    "build_environment", "promote", "fail_version", "fail_unfinished_versions", "reproduce",
    "load_recipe", "list_recipes", "Recipe", "ResourceDefaults",
    "launchable_version", "LaunchableVersion", "environment_summaries", "EnvironmentSummary", "environment_ids",
    "current_version", "current_images", "recent_versions", "version_record", "newest_lock",
    "version_history", "VersionRow", "Change", "current_on", "diff_locks", "LockDiff",
    "VersionStatus", "rpmvercmp", "label_compare", "rootfs_image", "apt_mirror", "client_for",
    "build_platform_image", "registry_gc", "GcReport", "setup_registry", "RegistryFiles",
    "BuildError", "DockerError", "LockError", "RecipeError", "VersionError", "UnknownVersion", "NotLaunchable",
    "UpToDate", "ArchiveError", "export_version", "verify_archive", "import_archive", "ARCHIVE_REPO",
    "Citable", "citation_of", "find_identifier", "persistent_id", "render_citation", "CITATION_FORMATS",
    "CITATION_MEDIA_TYPES",
]
