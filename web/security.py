"""Login state, CSRF protection and cookie settings shared by every page blueprint.

The login contract with the API blueprints is ``flask.session["user_id"]`` (``users.id``).
Every HTML form carries a CSRF token (Flask-WTF). Each blueprint declares its CSRF policy
when it is made (``asci.http.blueprint``): forms need the token; API blueprints that also
accept the login cookie skip the check for requests that carry an ``Authorization`` header
or a JSON body (a cross-site page can send neither without a CORS preflight, and the cookie
is SameSite=Lax); bearer-only blueprints never read the cookie and are exempt.
"""

from __future__ import annotations

import functools

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from asci import accounts
from asci.db import session_scope
from asci.http import CSRF_API, CSRF_BEARER_ONLY, app_settings, csrf_policy, current_settings

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
    app.before_request(_check_csrf)
    app.before_request(_load_user)
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
    if policy == CSRF_API and ("Authorization" in request.headers or request.is_json):
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
    user_id = session.get("user_id")
    if not isinstance(user_id, int):
        return
    with session_scope(current_settings()) as db:
        user = db.get(accounts.User, user_id)
        if user is None or not user.is_active:
            session.clear()
            return
        g.user = CurrentUser(user)


def user_row(db) -> accounts.User:
    """The logged-in user's row in ``db`` (for calls into the domain packages)."""
    return db.get(accounts.User, g.user.id)


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def log_in(user: accounts.User) -> None:
    """Start a fresh login session for ``user`` (the old session's data is dropped)."""
    session.clear()
    session["user_id"] = int(user.id)
    session.permanent = True


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


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.home")
