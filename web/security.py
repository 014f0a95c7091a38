"""Login state, CSRF protection and cookie settings shared by every page blueprint.

The login contract with the broker is ``flask.session["user_id"]`` (``users.id``).
Every HTML form carries a CSRF token (Flask-WTF). The JSON APIs that also
accept the login cookie (broker, ci) skip the check for requests that carry an
``Authorization`` header or a JSON body (a cross-site page can send neither
without a CORS preflight, and the cookie is SameSite=Lax); any other
state-changing request to them needs the token like a form does. The
bearer-only repository upload (``rpmrepo``) never reads the cookie: exempt.
"""

from __future__ import annotations

import functools

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from asci import accounts, db

csrf = CSRFProtect()

# JSON API blueprints that also accept the login cookie: requests with an Authorization header or a
# JSON body skip the CSRF check. Bearer-only blueprints (they never read the cookie) skip it always.
API_MODULES = ("broker.api", "ci.http")
BEARER_ONLY_MODULES = ("rpmrepo.http",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # checked by _check_csrf below, with the API rule
    csrf.init_app(app)
    def names(modules):
        return frozenset(bp.name for bp in map(_blueprint_of, modules) if bp.name in app.blueprints)

    app.extensions["asci_api_blueprints"] = names(API_MODULES)
    app.extensions["asci_bearer_only_blueprints"] = names(BEARER_ONLY_MODULES)
    app.before_request(_check_csrf)
    app.before_request(_load_user)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"current_user": g.get("user"), "oidc_enabled": bool(settings.oidc_issuer)})


def _blueprint_of(module_name: str):
    import importlib

    return importlib.import_module(module_name).bp


def _check_csrf() -> None:
    if request.method in SAFE_METHODS or not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    if request.blueprint in current_app.extensions["asci_bearer_only_blueprints"]:
        return
    if request.blueprint in current_app.extensions["asci_api_blueprints"]:
        if "Authorization" in request.headers or request.is_json:
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
    from web import settings_of

    g.user = None
    if request.path.startswith("/static/"):
        return
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
