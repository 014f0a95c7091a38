"""OpenID Connect login (facility single sign-on) with Authlib, on when ``oidc_issuer`` is set.

The provider is described by ``<oidc_issuer>/.well-known/openid-configuration``.

An account belongs to the provider's subject (``users.external_id`` = ``<issuer>|<sub>``), never
to a name: the first sign-on of a subject creates its account. The account's name comes from
``preferred_username`` when that is already a valid ASCI name (lower case aside) and free; any
other name (folded characters, a taken name, no preferred name) gets a suffix derived from the
identity, so two identities never share a name and nobody takes over an existing account or the
memberships granted to it by name. Profile claims the ID token lacks are read from the userinfo
endpoint. Memberships the user office granted to the identity (its subject, or an e-mail address
the provider verified) are bound at each sign-on (``broker.claim_memberships``).
"""

from __future__ import annotations

import hashlib
import re

from flask import abort, current_app, flash, redirect, request, session, url_for
from sqlalchemy import select

import broker
from asci import accounts
from asci.db import session_scope
from asci.http import app_settings, blueprint, current_settings
from web.security import log_in, safe_next

bp = blueprint("oidc", __name__)

CLIENT_NAME = "facility"
FAILED = "Single sign-on failed. Please try again."


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
    """The ASCI user name an OIDC identity asks for (lower-case, allowed characters only)."""
    raw = str(claims.get("preferred_username") or claims.get("sub") or "").strip().lower()
    raw = raw.split("@", 1)[0] if "@" in raw and not claims.get("preferred_username") else raw
    name = re.sub(r"[^a-z0-9_.\-]", "_", raw)[:64]
    if name and not re.match(r"[a-z_]", name[0]):
        name = "_" + name[:63]
    return name


def _is_exact(claims: dict, name: str) -> bool:
    """True when ``name`` is the provider's preferred_username itself (only lower-cased)."""
    preferred = str(claims.get("preferred_username") or "").strip()
    return bool(preferred) and preferred.lower() == name


def account_name(db, claims: dict, identity: str) -> str:
    """A free user name for a new sign-on account (see the module's docstring)."""
    name = username_from_claims(claims) or "user"
    taken = lambda candidate: db.scalar(  # noqa: E731
        select(accounts.User.id).where(accounts.User.username == candidate)) is not None
    if _is_exact(claims, name) and not taken(name):
        return name
    suffix = hashlib.sha256(identity.encode()).hexdigest()[:8]
    candidate = f"{name[:55].rstrip('-.')}-{suffix}"
    if taken(candidate):
        raise accounts.AccountError(f"no free user name for this identity ({candidate} is taken)")
    return candidate


def _claims(client) -> dict:
    """The identity's claims: the ID token's (validated by Authlib), completed from userinfo."""
    token = client.authorize_access_token()
    claims = dict(token.get("userinfo") or {})
    metadata = client.load_server_metadata()
    if token.get("access_token") and metadata.get("userinfo_endpoint"):
        extra = dict(client.userinfo(token=token))
        if claims.get("sub") and extra.get("sub") != claims["sub"]:
            raise ValueError("the userinfo endpoint answered for another subject")
        claims = {**extra, **claims}  # the signed ID token wins where both say something
    return claims


def _failed(message: str = FAILED):
    flash(message, "danger")
    return redirect(url_for("auth.login"))


def _text(claims: dict, key: str, limit: int) -> str:
    value = claims.get(key)
    return value.strip()[:limit] if isinstance(value, str) and value.isprintable() else ""


@bp.get("/login/oidc/callback")
def callback():
    """Exchange the code, read the identity, log the user in (creating the account on first login)."""
    import requests
    from authlib.common.errors import AuthlibBaseError
    from joserfc.errors import JoseError

    client = _client()
    try:
        claims = _claims(client)
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError, KeyError, TypeError) as exc:
        # a refused code, a forged state, an expired or badly signed ID token, a provider that is down
        current_app.logger.warning("OIDC login failed: %s: %s", type(exc).__name__, exc)
        return _failed()
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return _failed("The identity provider did not say who you are.")
    next_url = session.pop("oidc_next", None)
    settings = current_settings()
    try:
        identity = accounts.external_identity(settings.oidc_issuer, subject)
    except accounts.AccountError:
        return _failed("The identity provider sent an identity ASCI cannot use.")
    email = _text(claims, "email", 200)
    with session_scope(settings) as db:
        user = db.scalar(select(accounts.User).where(accounts.User.external_id == identity))
        if user is None:
            try:
                name = account_name(db, claims, identity)
            except accounts.AccountError as exc:
                current_app.logger.warning("OIDC login refused: %s", exc)
                return _failed("No account could be made for this identity; ask an administrator.")
            user = accounts.create_user(db, name, None, display_name=_text(claims, "name", 200) or name)
            user.external_id, user.self_registered = identity, True
        if not user.is_active:
            return _failed("This account is disabled.")
        if email:
            user.email = email
        broker.claim_memberships(db, user, verified_email=email if claims.get("email_verified") is True else None)
        log_in(user)
    return redirect(safe_next(next_url))
