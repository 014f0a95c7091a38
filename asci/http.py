"""The HTTP contract every blueprint follows.

* Settings: ``install_settings(app, settings)`` once; routes read ``current_settings()``.
* Errors: one handler (``register_error_handlers``) answers every :class:`AsciError` and every
  HTTP error on an API route as JSON ``{"error": message, "kind": name}`` with the error's
  ``http_status`` (401 with ``WWW-Authenticate``, ``Retry-After`` where the error sets it); pages
  get the HTML renderer the web package passes in.
* CSRF: each blueprint declares its policy when it is made (:func:`blueprint`):
  ``CSRF_FORMS`` (every state-changing request carries the form token), ``CSRF_API`` (the login
  cookie is accepted, requests with an ``Authorization`` header or a JSON body are exempt: a
  cross-site page can send neither without a CORS preflight) or ``CSRF_BEARER_ONLY`` (the routes
  never read the cookie: exempt).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from asci.config import Settings
from asci.errors import AsciError

CSRF_FORMS, CSRF_API, CSRF_BEARER_ONLY = "forms", "api", "bearer-only"
JSON_POLICIES = (CSRF_API, CSRF_BEARER_ONLY)
_SETTINGS_KEY = "asci_settings"


def blueprint(name: str, import_name: str, *, csrf: str = CSRF_FORMS, **options) -> Blueprint:
    """A Flask blueprint carrying its CSRF policy (and, for the API policies, JSON errors)."""
    if csrf not in (CSRF_FORMS, CSRF_API, CSRF_BEARER_ONLY):
        raise ValueError(f"unknown CSRF policy {csrf!r}")
    bp = Blueprint(name, import_name, **options)
    bp.csrf_policy = csrf  # type: ignore[attr-defined]
    return bp


def csrf_policy(app: Flask, blueprint_name: str | None) -> str:
    """The CSRF policy of the blueprint that serves a request (forms for anything else)."""
    bp = app.blueprints.get(blueprint_name or "")
    return getattr(bp, "csrf_policy", CSRF_FORMS)


# ------------------------------------------------------------------ settings

def install_settings(app: Flask, settings: Settings) -> None:
    """Attach the settings the application is built with."""
    app.extensions[_SETTINGS_KEY] = settings


def app_settings(app: Flask) -> Settings:
    """The settings ``app`` was built with."""
    return app.extensions[_SETTINGS_KEY]


def current_settings() -> Settings:
    """The settings of the application serving the current request."""
    return app_settings(current_app)


def secret_key(settings: Settings) -> str:
    """The key that signs cookies and VNC tokens: the setting, or one generated once under the data directory."""
    if settings.secret_key:
        return settings.secret_key
    path: Path = settings.data_dir / "secret_key"
    if not path.exists():
        # Written privately (0600 from the start) under a temporary name, then linked into place:
        # no other local user can open it while it is readable, and a process starting at the same
        # time (websockify beside the web server) never reads a half-written or different key.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".secret_key-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


# -------------------------------------------------------------------- errors

def is_api_request() -> bool:
    """True for requests to a JSON API route (by path, or by the serving blueprint's policy)."""
    if request.path.startswith("/api/"):
        return True
    return csrf_policy(current_app, request.blueprint) in JSON_POLICIES


def error_response(message: str, status: int, kind: str, headers: dict | None = None):
    """The JSON error body every API answers with."""
    response = jsonify(error=message, kind=kind)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _headers_of(exc: AsciError) -> dict:
    headers = {}
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = getattr(exc, "www_authenticate", 'Bearer realm="asci"')
    if exc.retry_after:
        headers["Retry-After"] = str(int(exc.retry_after))
    return headers


HtmlRenderer = Callable[[int, str], object]


def register_error_handlers(app: Flask, html: HtmlRenderer | None = None) -> None:
    """JSON errors on API routes, ``html(status, message)`` (when given) on pages."""

    def asci_error(exc: AsciError):
        status = exc.http_status
        if status >= 500 and type(exc).http_status == AsciError.http_status:
            current_app.logger.exception("unexpected error")
        if is_api_request() or html is None:
            return error_response(str(exc), status, type(exc).__name__, _headers_of(exc))
        return html(status, str(exc))

    def http_error(exc: HTTPException):
        if is_api_request():
            headers = {key: value for key, value in exc.get_headers() if key.lower() in ("allow", "retry-after",
                                                                                           "www-authenticate")}
            return error_response(exc.description or exc.name, exc.code or 500, exc.name.replace(" ", ""), headers)
        if html is not None and exc.code in (400, 403, 404, 405, 413, 429):
            return html(exc.code, exc.description or exc.name)
        return exc

    def server_error(exc: InternalServerError):
        if is_api_request():
            return error_response("internal error; the administrators can find it in the log", 500,
                                  "InternalServerError")
        return exc

    app.register_error_handler(AsciError, asci_error)
    app.register_error_handler(InternalServerError, server_error)
    app.register_error_handler(HTTPException, http_error)
