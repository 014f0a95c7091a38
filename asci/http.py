"""The HTTP contract every blueprint follows.

* Settings: ``install_settings(app, settings)`` once; routes read ``current_settings()``.
* Errors: one handler (``register_error_handlers``) answers every :class:`AsciError` and every
  HTTP error on an API route as JSON ``{"error": message, "kind": name}`` with the error's
  ``http_status`` (401 with ``WWW-Authenticate``, ``Retry-After`` where the error sets it); pages
  get the HTML renderer the web package passes in.
* Input: every request body is limited to ``request_max_bytes`` unless its route calls
  :func:`allow_body` first (RPM uploads); JSON bodies are read with :func:`json_object` after
  authentication (a malformed, deeply nested or NUL-carrying body is a 400, never a 500);
  query flags with :func:`flag_arg`; the client's address with :func:`client_address` (the
  ``X-Forwarded-For`` of ``trusted_proxies`` only).
* CSRF: each blueprint declares its policy when it is made (:func:`blueprint`):
  ``CSRF_FORMS`` (every state-changing request carries the form token), ``CSRF_API`` (the login
  cookie is accepted, requests with an ``Authorization`` header or a JSON body are exempt: a
  cross-site page can send neither without a CORS preflight) or ``CSRF_BEARER_ONLY`` (the routes
  never read the cookie: exempt).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import IntegerConverter

from asci.config import Settings
from asci.errors import AsciError, BadRequest

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
        settings.private_data_dir()
        fd, tmp = tempfile.mkstemp(prefix=".secret_key-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


# --------------------------------------------------------------------- input

MAX_JSON_DEPTH = 32
MAX_JSON_INTEGER = 2**63 - 1
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def allow_body(max_bytes: int) -> None:
    """Let the current request's body be up to ``max_bytes`` (call before the body is read)."""
    request.max_content_length = max_bytes


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's ``"\\ud800"``), which no database or UTF-8 can store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BoundedInt(IntegerConverter):
    """Flask's ``<int:...>``, bounded to what a database id can be (0 .. 2**63-1): a larger number in a URL
    is 404 like any id that does not exist, never an overflow in the database driver (a 500)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = None,  # noqa: A002
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=0 if min is None else min,
                         max=MAX_JSON_INTEGER if max is None else max, signed=signed)


def install_url_converters(app: Flask) -> None:
    """Make every ``<int:...>`` of ``app`` a :class:`BoundedInt`: call before registering blueprints."""
    app.url_map.converters["int"] = BoundedInt


def _check_json(value) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, NUL characters, absurd and non-finite numbers
    (the message names where: ``cpus``, ``members[2]``...)."""
    stack = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        label = where or "the body"
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"JSON body: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, inner in item.items():
                if "\x00" in key:
                    raise BadRequest("JSON body: a key contains a NUL character")
                if not _is_unicode(key):
                    raise BadRequest("JSON body: a key contains a lone UTF-16 surrogate")
                stack.append((inner, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1, f"{where}[{index}]") for index, inner in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                raise BadRequest(f"{label}: a string with a NUL character")
            if not _is_unicode(item):
                raise BadRequest(f"{label}: a string with a lone UTF-16 surrogate (\\ud800-\\udfff) is not text")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_JSON_INTEGER:
                raise BadRequest(f"{label}: the number {str(item)[:20]}... is out of range")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(f"{label}: expected a finite number, got {item!r}")


def json_object(example: str = "") -> dict:
    """The request body as a JSON object; :class:`BadRequest` for anything else.

    Call it after :func:`asci.webauth.require_user`: an anonymous body is never parsed.
    """
    hint = f" such as {example}" if example else ""
    if not request.is_json:
        raise BadRequest(f"expected a JSON object{hint} with Content-Type: application/json")
    raw = request.get_data(cache=True)  # bounded by the request's max_content_length (413 beyond)
    try:
        body = json.loads(raw)  # NaN and Infinity parse, and are refused by _check_json naming the field
    except RecursionError:
        raise BadRequest(f"JSON body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"expected a JSON object{hint}: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object{hint}")
    _check_json(body)
    return body


def known_args(*names: str) -> None:
    """Refuse query parameters a route does not know (a typo is a 400, not silently ignored)."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        allowed = f"; expected {', '.join(names)}" if names else "; it takes none"
        raise BadRequest(f"unknown query parameter(s): {', '.join(name[:40] for name in unknown[:5])}{allowed}")


def flag_arg(name: str) -> bool:
    """A yes/no query parameter: absent, ``0``/``false`` or ``1``/``true``; anything else is a 400."""
    raw = request.args.get(name)
    if raw is None:
        return False
    value = _FLAGS.get(raw.lower())
    if value is None:
        raise BadRequest(f"{name}: expected 1, true, 0 or false, got {raw[:20]!r}")
    return value


def check_url() -> None:
    """Refuse a request whose path or query carries control characters (NUL reaches no database);
    a URL that matches no route is left to its 404 or 405. Pages are left alone: they read no text
    from the query into the database, and the login page must still open with a bad ``next``."""
    if request.routing_exception is not None or not is_api_request():
        return
    for text in (request.path, *request.args.keys(), *request.args.values()):
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise BadRequest("the URL contains control characters")


def _networks(settings: Settings):
    return [ipaddress.ip_network(item, strict=False) for item in settings.trusted_proxies]


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(settings: Settings | None = None) -> str:
    """The address of the client: the peer, or, when the peer is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not itself a trusted proxy (right to left)."""
    settings = settings or current_settings()
    peer = request.remote_addr or ""
    trusted = _networks(settings)
    if not trusted:
        return peer or "-"
    current = _address(peer)
    if current is None or not any(current in net for net in trusted):
        return peer or "-"
    hops = [hop for header in request.headers.getlist("X-Forwarded-For") for hop in header.split(",")]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            break  # a malformed entry: nothing left of it can be believed
        current = found
        if not any(found in net for net in trusted):
            return str(found)
    return str(current)


# -------------------------------------------------------------------- errors

_JSON_PATHS_KEY = "asci_json_paths"


def is_api_request() -> bool:
    """True for requests to a JSON API route (by path, or by the serving blueprint's policy); the
    path decides for requests that matched no route (404, 405), which no blueprint serves."""
    if request.path.startswith("/api/") or request.path in current_app.extensions.get(_JSON_PATHS_KEY, ()):
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


_KEPT_HEADERS = ("allow", "retry-after", "www-authenticate")


def register_error_handlers(app: Flask, html: HtmlRenderer | None = None, json_paths: tuple[str, ...] = ()) -> None:
    """JSON errors on API routes (``/api/...``, ``json_paths`` and the JSON blueprints),
    ``html(status, message)`` (when given) on pages; both keep ``Allow``, ``Retry-After`` and
    ``WWW-Authenticate``."""
    app.extensions[_JSON_PATHS_KEY] = tuple(json_paths)

    def asci_error(exc: AsciError):
        status = exc.http_status
        if status >= 500 and type(exc).http_status == AsciError.http_status:
            current_app.logger.exception("unexpected error")
        if is_api_request() or html is None:
            return error_response(str(exc), status, type(exc).__name__, _headers_of(exc))
        response = current_app.make_response(html(status, str(exc)))
        response.headers.update(_headers_of(exc))
        return response

    def http_error(exc: HTTPException):
        headers = {key: value for key, value in exc.get_headers() if key.lower() in _KEPT_HEADERS}
        if is_api_request():
            return error_response(exc.description or exc.name, exc.code or 500, type(exc).__name__, headers)
        if html is not None and exc.code in (400, 403, 404, 405, 413, 429):
            response = current_app.make_response(html(exc.code, exc.description or exc.name))
            response.headers.update(headers)
            return response
        return exc

    def server_error(exc: InternalServerError):
        if is_api_request():
            return error_response("internal error; the administrators can find it in the log", 500,
                                  "InternalServerError")
        return exc

    app.register_error_handler(AsciError, asci_error)
    app.register_error_handler(InternalServerError, server_error)
    app.register_error_handler(HTTPException, http_error)
