"""Login state, CSRF protection and cookie settings shared by every page blueprint.

The login cookie is written and read by ``asci.webauth`` only (``start_login_session``,
``cookie_user``): the user's id and the account's session epoch, so logging out, a password
change or disabling the account ends every cookie issued before.
Every HTML form carries a CSRF token (Flask-WTF). Each blueprint declares its CSRF policy
when it is made (``asci.http.blueprint``): forms need the token; API blueprints that also
accept the login cookie skip the check for requests that carry an ``Authorization`` header
or a JSON body (a cross-site page can send neither without a CORS preflight, and the cookie
is SameSite=Lax), and for requests without a login cookie (nothing to forge: the route answers
401); bearer-only blueprints never read the cookie and are exempt.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from asci import accounts
from asci.db import session_scope
from asci.http import CSRF_API, CSRF_BEARER_ONLY, app_settings, check_url, csrf_policy, current_settings
from asci.webauth import cookie_user, start_login_session

csrf = CSRFProtect()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def init_app(app: Flask) -> None:
    """CSRF on every form, hardened cookies, and ``g.user`` loaded per request."""
    settings = app_settings(app)
    secure = settings.public_url.startswith("https://")
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
    app.config.update(
        SESSION_COOKIE_NAME="asci_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # checked by _check_csrf below, with the API rule
    csrf.init_app(app)
    app.before_request(check_url)
    app.before_request(_load_user)  # first: a stale cookie is cleared before CSRF is considered
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"current_user": g.get("user"), "oidc_enabled": bool(settings.oidc_issuer)})


def _check_csrf() -> None:
    if request.method in SAFE_METHODS or not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    if request.routing_exception is not None:
        return  # no such route or method: answered 404/405, nothing to protect
    policy = csrf_policy(current_app, request.blueprint)
    if policy == CSRF_BEARER_ONLY:
        return
    if policy == CSRF_API and ("Authorization" in request.headers or request.is_json or g.get("user") is None):
        return
    csrf.protect()


class CurrentUser:
    """A detached snapshot of the logged-in user (no lazy loading outside a DB session)."""

    def __init__(self, user: accounts.User) -> None:
        self.id = user.id
        self.username = user.username
        self.display_name = user.display_name or user.username
        self.is_admin = bool(user.is_admin)


def _load_user() -> None:
    g.user = None
    if request.path.startswith("/static/"):
        return
    if "user_id" not in session:
        return
    with session_scope(current_settings()) as db:
        user = cookie_user(db)
        if user is None:  # disabled, logged out elsewhere, password changed: this cookie is over
            session.clear()
            return
        g.user = CurrentUser(user)


def user_row(db) -> accounts.User:
    """The logged-in user's row in ``db`` (for calls into the domain packages)."""
    return db.get(accounts.User, g.user.id)


def content_security_policy(settings, host: str, scheme: str) -> str:
    """The pages' Content-Security-Policy: scripts, styles sheets, fonts and images from the platform
    itself (no inline script, no eval), WebSockets to the VNC proxy, forms sent only here (and to the
    single sign-on provider), never framed. Style attributes stay allowed (Bootstrap's markup uses them;
    they run no code). noVNC works under it: its modules come from here, its cursor is a data: image."""
    from web.vnc_proxy import websocket_url

    ws = urlsplit(websocket_url(settings, host.split(":")[0], scheme))
    connect = f"'self' {ws.scheme}://{ws.netloc}"
    forms = "'self'"
    if settings.oidc_issuer:
        issuer = urlsplit(settings.oidc_issuer)
        forms += f" {issuer.scheme}://{issuer.netloc}"
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            f"font-src 'self' data:; connect-src {connect}; worker-src 'self' blob:; object-src 'none'; "
            f"base-uri 'self'; form-action {forms}; frame-ancestors 'none'")


def _security_headers(response):
    if "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = content_security_policy(current_settings(), request.host,
                                                                              request.scheme)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def log_in(user: accounts.User) -> None:
    """Start a fresh login session for ``user`` (the old session's data is dropped)."""
    start_login_session(user)


def login_required(view):
    """Send anonymous visitors to the login page, coming back here afterwards."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def admin_required(view):
    """Administrators only (403 for other logged-in users)."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not g.user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def is_local_path(target: str | None) -> bool:
    """True for a path on this site: one leading '/', no scheme, no host, no backslash, no control
    characters or white space (browsers drop tabs and newlines, so '/<TAB>/evil' would be '//evil')."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return False
    if any(ord(ch) < 33 or ord(ch) == 127 or ch.isspace() for ch in target) or "\\" in target:
        return False
    if not target.startswith("/") or target.startswith("//"):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    return target if is_local_path(target) else url_for("pages.home")
