"""Public API of the beamline YUM repository, re-exported by ``rpmrepo`` (whose docstring lists it
with the two views, ``current`` and ``all``)."""

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
