"""The ASCI web application: pages, login and the JSON APIs, built by ``create_app``.

The top of the layering: it composes the blueprints of every package (each through its
package's public face) and shows what the domain packages compute.
"""

from __future__ import annotations

from flask import Flask, render_template

import broker as _broker
import ci
import rpmrepo
from asci.config import Settings, load_settings
from asci.http import install_settings, install_url_converters, register_error_handlers, secret_key
from web.errors import DemoError, WebError

__all__ = ["create_app", "WebError", "DemoError"]


PAGE_MESSAGES = {403: "You are not allowed to see this page.", 404: "There is nothing here."}


def _html_error(status: int, message: str):
    return render_template("error.html", code=status, message=PAGE_MESSAGES.get(status, message)), status


def create_app(settings: Settings | None = None, test_config: dict | None = None,
               broker: _broker.Broker | None = None) -> Flask:
    """Build the Flask application for ``settings`` (read from the environment when omitted), whose
    requests use ``broker`` (a new one for ``settings`` when omitted; ``broker.current_broker()``)."""
    from web import admin, assets, auth, citations, formatting, health, metrics, oidc, openapi, pages, pictures, security, timeline, viewer

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        MAX_CONTENT_LENGTH=settings.request_max_bytes,  # RPM uploads raise it for their route only
    )
    if test_config:
        app.config.update(test_config)
    install_settings(app, settings)
    _broker.attach(app, broker or _broker.Broker(settings))
    install_url_converters(app)  # before the blueprints: their <int:...> ids are bounded
    for bp in (health.bp, rpmrepo.blueprint, _broker.blueprint, _broker.files_blueprint, ci.blueprint, openapi.bp, pages.bp, assets.bp,
               auth.bp, oidc.bp, viewer.bp, admin.bp, citations.bp, timeline.bp, metrics.bp, pictures.bp):
        app.register_blueprint(bp)
    register_error_handlers(app, html=_html_error, json_paths=("/healthz", "/metrics"))
    formatting.register(app)
    metrics.instrument(app)
    security.init_app(app)
    oidc.init_app(app)
    return app
