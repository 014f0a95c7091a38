"""Login state, CSRF protection and cookie settings shared by every page blueprint.

The login contract with the broker is ``flask.session["user_id"]`` (``users.id``).
Every HTML form carries a CSRF token (Flask-WTF); the JSON blueprints that
authenticate with bearer tokens (``rpmrepo``, the broker API) are exempt.
"""

from __future__ import annotations

import functools

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from asci import accounts, db

csrf = CSRFProtect()

# Blueprints that authenticate with bearer tokens and speak JSON only.
CSRF_EXEMPT_MODULES = ("rpmrepo.http", "broker.api", "ci.http")


def init_app(app: Flask) -> None:
    """CSRF on every form, hardened cookies, and ``g.user`` loaded per request."""
    from web import settings_of

    settings = settings_of(app)
    secure = settings.public_url.startswith("https://")
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
    app.config.update(
        SESSION_COOKIE_NAME="asci_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    csrf.init_app(app)
    for module_name in CSRF_EXEMPT_MODULES:
        blueprint = _blueprint_of(module_name)
        if blueprint is not None and blueprint.name in app.blueprints:
            csrf.exempt(blueprint)
    app.before_request(_load_user)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"current_user": g.get("user"), "oidc_enabled": bool(settings.oidc_issuer)})


def _blueprint_of(module_name: str):
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    return getattr(module, "bp", None)


class CurrentUser:
    """A detached snapshot of the logged-in user (no lazy loading outside a DB session)."""

    def __init__(self, user: accounts.User) -> None:
        self.id = user.id
        self.username = user.username
        self.display_name = user.display_name or user.username
        self.is_admin = bool(user.is_admin)


def _load_user() -> None:
    from web import settings_of

    g.user = None
    user_id = session.get("user_id")
    if not isinstance(user_id, int):
        return
    with db.session_scope(settings_of(current_app)) as dbs:
        user = dbs.get(accounts.User, user_id)
        if user is None or not user.is_active:
            session.clear()
            return
        g.user = CurrentUser(user)


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
