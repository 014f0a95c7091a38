"""HTTP routes of the repositories (blueprint ``bp``, registered by :func:`web.create_app`).

* ``GET  /repos/<repo>/<view>/<path>`` - the repository files (``repodata/*`` and ``*.rpm``) for
  ``view`` in ``all`` / ``current``: a dnf/yum ``baseurl``;
* ``GET  /repos/<repo>.repo`` - a .repo file for clients (both views; ``current`` enabled);
* ``GET  /repos/RPM-GPG-KEY-asci`` - the configured public keys (``gpgkey=`` of the .repo file);
* ``GET  /api/repos/<repo>/packages`` - the index as JSON (``?all=1`` includes retracted; who
  published each package only for an administrator's token with the ``admin`` scope);
* ``POST /api/repos/<repo>/packages`` - multipart upload (field ``file``, repeatable) with
  ``Authorization: Bearer <token>`` carrying the ``publish:<repo>`` scope, by a user granted the
  right to publish there (``asci repo grant``), into a repository that exists (``asci repo create``);
  201 when something was published, 200 when all were already there, 400/413 invalid, 401 no
  valid token, 403 no grant or scope, 404 no such repository, 409 conflicting NEVRA.

Only the upload route accepts a large body (``repo_max_rpm_bytes``), and only once the token,
scope and grant are checked; every other request is limited to ``request_max_bytes``.
"""

from __future__ import annotations

from flask import Response, abort, jsonify, request, send_from_directory

from asci.db import session_scope
from asci.http import CSRF_BEARER_ONLY, allow_body, blueprint, current_settings, flag_arg, known_args
from asci.webauth import optional_caller, require_caller
from rpmrepo.errors import InvalidPackage, PublishForbidden
from rpmrepo.grants import publish_scope, require_publisher
from rpmrepo.index import list_packages
from rpmrepo.publish import publish_staged
from rpmrepo.store import RepoLayout, check_view
from rpmrepo.validate import discard, incoming_dir, stage_stream

bp = blueprint("rpmrepo", __name__, csrf=CSRF_BEARER_ONLY)  # uploads take a token, never the login cookie


@bp.get("/repos/<repo>/<view>/<path:filename>")
def repo_file(repo: str, view: str, filename: str):
    """A file of a repository view (send_from_directory refuses paths leaving the folder)."""
    layout = RepoLayout.of(current_settings(), repo)
    if not layout.exists():
        abort(404)
    folder = layout.view_dir(check_view(view))
    response = send_from_directory(folder, filename, max_age=0 if filename.endswith("repomd.xml") else 3600)
    if filename.endswith("repomd.xml"):
        response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/repos/<repo>.repo")
def repo_file_definition(repo: str):
    """A dnf/yum .repo file pointing at this server's ``public_url``."""
    settings = current_settings()
    layout = RepoLayout.of(settings, repo).require()
    base = settings.public_url.rstrip("/")
    lines = []
    for view, enabled in (("current", 1), ("all", 0)):
        suffix = "" if view == "current" else "-all"
        lines += [
            f"[asci-{layout.name}{suffix}]",
            f"name=ASCI {layout.name} ({'current packages' if view == 'current' else 'all packages, retracted included'})",
            f"baseurl={base}/repos/{layout.name}/{view}/",
            f"enabled={enabled}",
            f"gpgcheck={1 if settings.repo_require_signature else 0}",
            *([f"gpgkey={base}/repos/RPM-GPG-KEY-asci"] if settings.repo_require_signature else []),
            "metadata_expire=60",
            "",
        ]
    return Response("\n".join(lines), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="asci-{layout.name}.repo"'})


@bp.get("/repos/RPM-GPG-KEY-asci")
def gpg_keys():
    """The armored public keys that signatures are checked against (404 when none are configured)."""
    keys = [path.read_text() for path in current_settings().repo_gpg_keys if path.is_file()]
    if not keys:
        abort(404)
    return Response("\n".join(keys), mimetype="text/plain")


@bp.get("/api/repos/<repo>/packages")
def api_list(repo: str):
    """The repository's packages as JSON."""
    settings = current_settings()
    with session_scope(settings) as db:
        who = optional_caller(db, bearer_only=True)
        administrator = who is not None and who.is_admin
        known_args("all")
        include = flag_arg("all")
        layout = RepoLayout.of(settings, repo).require()
        rows = [row.as_dict() for row in list_packages(db, layout.name, include_retracted=include)]
    if not administrator:  # who published what is for administrators
        for row in rows:
            row.pop("published_by_id", None)
    return jsonify(repo=layout.name, packages=rows)


@bp.post("/api/repos/<repo>/packages")
def api_upload(repo: str):
    """Publish uploaded RPMs (the client's file names are used in messages only)."""
    settings = current_settings()
    with session_scope(settings) as db:  # token, scope, repository and grant before the body is read
        caller = require_caller(db, bearer_only=True)
        name = RepoLayout.of(settings, repo).name  # a malformed name is a 400 whatever the token says
        if not caller.allows(publish_scope(name)):
            raise PublishForbidden(f"this API token lacks the {publish_scope(name)!r} scope")
        require_publisher(settings, db, caller.user, name)
        user_id = caller.user.id
    known_args()
    allow_body(settings.repo_max_rpm_bytes + 1024 * 1024)
    uploads = request.files.getlist("file")
    if not uploads:
        raise InvalidPackage("no file uploaded (multipart field 'file')")
    folder = incoming_dir(settings)
    try:
        staged = []
        for number, upload in enumerate(uploads, 1):
            label = _label(upload.filename, number)
            staged.append((stage_stream(settings, upload.stream, folder, label), label))
        result = publish_staged(settings, staged, folder, repo=repo, user=user_id)
    finally:
        discard(folder)
    return jsonify(result.as_dict()), 201 if result.published else 200


def _label(filename: str | None, number: int) -> str:
    """A printable name for messages: the last component of the client's name, or ``upload-N``."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name if name not in {"", ".", ".."} else f"upload-{number}"
