"""OpenID Connect login (facility single sign-on) with Authlib, on when ``oidc_issuer`` is set.

The provider is described by ``<oidc_issuer>/.well-known/openid-configuration``.
A user is matched by the ``preferred_username`` claim (else ``sub``), normalised
to a valid ASCI user name; a first login creates the account (no local password).
"""

from __future__ import annotations

import re

from flask import abort, current_app, flash, redirect, request, session, url_for
from sqlalchemy import select

from asci import accounts
from asci.db import session_scope
from asci.http import app_settings, blueprint, current_settings
from web.security import log_in, safe_next

bp = blueprint("oidc", __name__)

CLIENT_NAME = "facility"


def init_app(app) -> None:
    """Register the OIDC client when the settings name an issuer."""
    from authlib.integrations.flask_client import OAuth

    settings = app_settings(app)
    if not settings.oidc_issuer:
        return
    oauth = OAuth(app)
    oauth.register(
        CLIENT_NAME,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scopes},
    )
    app.extensions["asci_oidc"] = oauth


def _client():
    oauth = current_app.extensions.get("asci_oidc")
    if oauth is None:
        abort(404)
    return oauth.create_client(CLIENT_NAME)


@bp.get("/login/oidc")
def start():
    """Redirect to the provider's authorisation endpoint."""
    session["oidc_next"] = safe_next(request.args.get("next"))
    return _client().authorize_redirect(url_for("oidc.callback", _external=True))


def username_from_claims(claims: dict) -> str:
    """The ASCI user name for an OIDC identity (lower-case, allowed characters only)."""
    raw = str(claims.get("preferred_username") or claims.get("sub") or "").strip().lower()
    raw = raw.split("@", 1)[0] if "@" in raw and not claims.get("preferred_username") else raw
    name = re.sub(r"[^a-z0-9_.\-]", "_", raw)[:64]
    if name and not re.match(r"[a-z_]", name[0]):
        name = "_" + name[:63]
    return name


@bp.get("/login/oidc/callback")
def callback():
    """Exchange the code, read the identity, log the user in (creating the account on first login)."""
    from authlib.integrations.base_client import OAuthError

    client = _client()
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        if not claims.get("preferred_username") and not claims.get("sub"):
            claims.update(client.userinfo(token=token))
    except (OAuthError, ValueError, KeyError) as exc:
        current_app.logger.warning("OIDC login failed: %s", exc)
        flash("Single sign-on failed. Please try again.", "danger")
        return redirect(url_for("auth.login"))
    username = username_from_claims(claims)
    if not username or not claims.get("sub"):
        flash("The identity provider did not say who you are.", "danger")
        return redirect(url_for("auth.login"))
    next_url = session.pop("oidc_next", None)
    settings = current_settings()
    identity = f"{settings.oidc_issuer}|{claims['sub']}"
    with session_scope(settings) as db:
        # Accounts are bound to the provider's subject, never matched by a name the provider lets
        # people choose: a taken name (a local account, an administrator) is refused, not taken over.
        user = db.scalar(select(accounts.User).where(accounts.User.external_id == identity))
        if user is None:
            if db.scalar(select(accounts.User).where(accounts.User.username == username)) is not None:
                flash(f"An account named {username} already exists and is not linked to this sign-on "
                      "identity; ask an administrator.", "danger")
                return redirect(url_for("auth.login"))
            user = accounts.create_user(db, username, None, display_name=str(claims.get("name") or username))
            user.email = str(claims.get("email") or "")
            user.external_id = identity
        if not user.is_active:
            flash("This account is disabled.", "danger")
            return redirect(url_for("auth.login"))
        log_in(user)
    return redirect(safe_next(next_url))
