"""The files API of a running desktop (blueprint ``bp``), described in ``broker.files_openapi``.

Authentication as for every session route (``asci.webauth.require_user`` with the ``sessions``
scope, before any body is read); errors are JSON (``asci.http``). Paths are relative to the home
(``files``) or to the experiment's read-only data (``data``).

- ``GET    /api/sessions/<id>/files/`` and ``.../files/<folder>/``   the folder as JSON ``{"root", "path",
  "entries": [{"name", "type", "size", "mtime"}]}``
- ``GET    /api/sessions/<id>/files/<path>``   a file, streamed with ``Content-Length``; a folder with
  ``?archive=zip|tar`` as an archive stream (without: its listing; ``archive=`` on a file: 409)
- ``PUT    /api/sessions/<id>/files/<path>``   the request body becomes the file (``Content-Length``
  required; folders made as needed; 201; an existing file only with ``?overwrite=1``, else 409; 413 above
  ``files_max_upload_bytes``)
- ``DELETE /api/sessions/<id>/files/<path>``   remove a file → 204
- ``GET    /api/sessions/<id>/data/...``   the same reads for ``/data``; it is never written
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, jsonify, request, stream_with_context
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import PathConverter

from asci.accounts import SCOPE_SESSIONS
from asci.db import session_scope
from asci.http import CSRF_API, allow_body, blueprint, current_settings, flag_arg, known_args
from asci.webauth import require_user
from broker import files
from broker.handle import current_broker
from broker.errors import BadRequest, Conflict
from broker.file_archives import tar_to_zip
from broker.file_channel import DATA, HOME
from broker.file_paths import clean_path

bp = blueprint("files_api", __name__, csrf=CSRF_API)


class AnyPath(PathConverter):
    """Like ``path``, but a leading ``/`` (``files//etc/passwd``, ``files/%2Fetc``) reaches the route, which
    refuses it as an absolute path (400), rather than matching nothing (405 for PUT)."""

    regex = ".*?"
    part_isolating = False


bp.record_once(lambda state: state.app.url_map.converters.setdefault("anypath", AnyPath))
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@bp.url_value_preprocessor
def _upload_body_limit(endpoint: str | None, values: dict | None) -> None:
    """An upload's body may be up to ``files_max_upload_bytes``. Set before the CSRF check (which opens the
    request's stream, bounded at that moment), and never for form bodies, which that check would parse
    before the caller is known."""
    if endpoint == f"{bp.name}.upload" and request.mimetype not in FORM_TYPES:
        allow_body(current_settings().files_max_upload_bytes)

MAX_ID = 2**63 - 1
ARCHIVES = {"zip": "application/zip", "tar": "application/x-tar"}


def _session_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
        raise BadRequest(f"session id: expected a number, got {raw[:40]!r}")
    return int(raw)


def _backend():
    return current_broker().backend


def _attachment(name: str) -> str:
    ascii_name = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{ascii_name or 'download'}\"; filename*=UTF-8''{quote(name, safe='')}"


def _listing(access, root: str, path: str):
    clean, entries = files.listing(access, root, path)
    return jsonify(root=root, path=clean, entries=[entry.as_dict() for entry in entries])


def _read(root: str, session_id: str, path: str):
    known_args("archive")
    archive = request.args.get("archive")
    if archive is not None and archive not in ARCHIVES:
        raise BadRequest(f"archive: expected zip or tar, got {archive[:20]!r}")
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        access = files.open_files(db, _backend(), _session_id(session_id), user)
    if (path == "" or path.endswith("/")) and archive is None:
        return _listing(access, root, path)
    clean, entry = files.stat(access, root, path)
    name = entry.name or ("home" if root == HOME else "data")
    if entry.type == "dir":
        if archive is None:  # a folder named without its trailing slash lists itself
            return _listing(access, root, clean)
        chunks = files.archive(access, root, clean)
        body = tar_to_zip(chunks) if archive == "zip" else chunks
        return Response(stream_with_context(body), mimetype=ARCHIVES[archive], direct_passthrough=True,
                        headers={"Content-Disposition": _attachment(f"{name}.{archive}"), "Cache-Control": "no-store"})
    if archive is not None:
        raise Conflict(f"{clean}: not a folder (archive= is for folders)")
    download = files.download(access, root, clean)

    def body():
        try:
            yield from download.chunks
        finally:
            download.close()

    return Response(body(), mimetype="application/octet-stream", direct_passthrough=True,
                    headers={"Content-Length": str(download.size), "Content-Disposition": _attachment(name),
                             "Cache-Control": "no-store"})


@bp.get("/api/sessions/<session_id>/files/<anypath:path>", merge_slashes=False)  # first: takes "a/" too
def read_home(session_id: str, path: str):
    return _read(HOME, session_id, path)


@bp.get("/api/sessions/<session_id>/files/", defaults={"folder": ""})
@bp.get("/api/sessions/<session_id>/files/<anypath:folder>/", merge_slashes=False)
def list_home(session_id: str, folder: str):
    return _read(HOME, session_id, folder + "/")


@bp.get("/api/sessions/<session_id>/data/<anypath:path>", merge_slashes=False)  # first: takes "a/" too
def read_data(session_id: str, path: str):
    return _read(DATA, session_id, path)


@bp.get("/api/sessions/<session_id>/data/", defaults={"folder": ""})
@bp.get("/api/sessions/<session_id>/data/<anypath:folder>/", merge_slashes=False)
def list_data(session_id: str, folder: str):
    return _read(DATA, session_id, folder + "/")


def _file_only(path: str) -> None:
    """PUT and DELETE name a file: on a folder's URL (``files/``, ``files/<folder>/``) they do not exist (405)."""
    if path == "" or path.endswith("/"):
        raise MethodNotAllowed(valid_methods=["GET", "HEAD"])


@bp.put("/api/sessions/<session_id>/files/<anypath:path>", merge_slashes=False)
def upload(session_id: str, path: str):
    _file_only(path)
    settings = current_settings()
    with session_scope(settings) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args("overwrite")
        overwrite = flag_arg("overwrite")
        number = _session_id(session_id)
        clean = clean_path(path)
        size = request.content_length
        if size is None:
            raise files.LengthRequired("an upload needs Content-Length (chunked bodies are not taken)")
        if size > settings.files_max_upload_bytes:
            raise files.UploadTooLarge(f"{size} bytes is more than the {settings.files_max_upload_bytes} "
                                       "an upload may be (files_max_upload_bytes)")
        access = files.open_files(db, _backend(), number, user, write=True)
        allow_body(settings.files_max_upload_bytes)
        clean, entry = files.upload(db, access, clean, request.stream, size, overwrite,
                                    settings.files_max_upload_bytes)
        db.commit()
    reply = jsonify(root=HOME, path=clean, **entry.as_dict())
    reply.headers["Location"] = f"/api/sessions/{number}/files/{quote(clean)}"
    return reply, 201


@bp.delete("/api/sessions/<session_id>/files/<anypath:path>", merge_slashes=False)
def delete(session_id: str, path: str):
    _file_only(path)
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args()
        number = _session_id(session_id)
        clean = clean_path(path)
        access = files.open_files(db, _backend(), number, user, write=True)
        files.delete(db, access, clean)
        db.commit()
    return "", 204
