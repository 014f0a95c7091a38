"""The beamline YUM repository: validate, store, index and serve RPMs; emit change events.

Public API (for ``builder/``, ``ci/`` and ``web/``)::

    publish(settings, paths, repo=None, user=None) -> PublishResult  # in-process: the administrator's path
    retract(settings, nevra, repo=None, user=None) -> RetractResult
    reindex(settings, repo=None, regenerate_metadata=False) -> ReindexResult
    list_packages(db, repo, include_retracted=False) -> list[RpmPackage]
    find_package(db, repo, nevra) -> RpmPackage | None
    repo_path(settings, repo=None, view="all") -> Path     # local folder: baseurl=file://..., --repofrompath
    repo_url(settings, repo=None, view="current") -> str   # HTTP baseurl under settings.public_url
    events_after(db, last_id=0, limit=100, repo=None) -> list[RepoEvent]
    detect_external_changes(settings, db) -> list[RepoEvent]
    dependency_closure(db, repo, names) -> set[str]  # names reachable through requires → provides
    create_repo(settings, name)                      # administrators create repositories ...
    grant_publisher(db, repo, user, by=None);  revoke_publisher(db, repo, user)   # ... and grant publishing
    list_grants(db, repo=None);  may_publish(db, user, repo)
    blueprint, openapi_fragment()                    # the HTTP routes and their OpenAPI description

Two views of each repository, both complete dnf repositories:

* ``current`` - what new builds resolve against: every published package except retracted ones;
* ``all`` - every package ever published, retracted ones included: reproducing a lock that names
  a retracted NEVRA installs from here.

Served at ``<public_url>/repos/<repo>/<view>/`` and described by ``<public_url>/repos/<repo>.repo``.
Errors derive from :class:`rpmrepo.errors.RepoError`. Like every package with a JSON API, the routes
are the blueprint in ``rpmrepo/http.py`` and their description ``rpmrepo/openapi.py``.
"""

from __future__ import annotations

from pathlib import Path

from asci.config import Settings
from rpmrepo.errors import ConflictError, InvalidPackage, NotFound, PublishForbidden, RepoError
from rpmrepo.events import events_after
from rpmrepo.grants import create_repo, list_grants, may_publish
from rpmrepo.grants import grant as grant_publisher
from rpmrepo.grants import revoke as revoke_publisher
from rpmrepo.http import bp as blueprint
from rpmrepo.index import capability_name, dependency_closure, find_package, list_packages, parse_nevra
from rpmrepo.openapi import fragment as openapi_fragment
from rpmrepo.models import RepoEvent, RpmPackage
from rpmrepo.publish import PublishResult, ReindexResult, RetractResult, publish, reindex, retract
from rpmrepo.store import RepoLayout, check_view, list_repos
from rpmrepo.watch import detect_external_changes


def repo_path(settings: Settings, repo: str | None = None, view: str = "all") -> Path:
    """The local folder of a repository view (holds ``repodata/`` and the packages)."""
    return RepoLayout.of(settings, repo).view_dir(view)


def repo_url(settings: Settings, repo: str | None = None, view: str = "current") -> str:
    """The HTTP base URL of a repository view, ending with ``/``."""
    layout = RepoLayout.of(settings, repo)
    return f"{settings.public_url.rstrip('/')}/repos/{layout.name}/{check_view(view)}/"


__all__ = [
    "publish", "retract", "reindex", "list_packages", "find_package", "repo_path", "repo_url", "events_after",
    "detect_external_changes", "list_repos", "parse_nevra", "dependency_closure", "capability_name",
    "PublishResult", "RetractResult", "ReindexResult", "RpmPackage", "RepoEvent", "RepoError", "InvalidPackage",
    "ConflictError", "NotFound", "PublishForbidden", "blueprint", "openapi_fragment",
    "create_repo", "grant_publisher", "revoke_publisher", "list_grants", "may_publish",
]
