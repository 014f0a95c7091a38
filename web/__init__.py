"""The ASCI web application: pages, login and the JSON API, built by ``create_app``."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask

from asci.config import Settings, load_settings
from asci.errors import AsciError


class WebError(AsciError):
    """Root of the web package's errors."""


def _secret_key(settings: Settings) -> str:
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


def create_app(settings: Settings | None = None, test_config: dict | None = None) -> Flask:
    """Build the Flask application for ``settings`` (read from the environment when omitted)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        MAX_CONTENT_LENGTH=settings.repo_max_rpm_bytes + 1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["asci_settings"] = settings

    import broker.api
    import ci.http
    import rpmrepo.http
    from web import health, pages

    for blueprint in (health.bp, rpmrepo.http.bp, broker.api.bp, ci.http.bp, pages.bp):
        app.register_blueprint(blueprint)
    _register_pages(app)
    return app


def _register_pages(app: Flask) -> None:
    """The page blueprints beside ``web.pages``, CSRF/cookies/login state, and OIDC when configured."""
    from web import admin, assets, auth, oidc, security, viewer

    for blueprint in (assets.bp, auth.bp, oidc.bp, viewer.bp, admin.bp):
        app.register_blueprint(blueprint)
    security.init_app(app)
    oidc.init_app(app)


def settings_of(app: Flask) -> Settings:
    """The settings the application was built with."""
    return app.extensions["asci_settings"]
