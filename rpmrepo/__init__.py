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
Errors derive from :class:`rpmrepo.errors.RepoError`.
"""

from rpmrepo.api import *  # noqa: F401,F403  (the public API lives in rpmrepo.api)
from rpmrepo.api import __all__  # noqa: F401
