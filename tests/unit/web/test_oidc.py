"""OpenID Connect login against a fake provider on 127.0.0.1 (no external network)."""

import threading
from urllib.parse import parse_qs, urlparse

import pytest
from flask import Flask, jsonify, request
from sqlalchemy import select
from werkzeug.serving import make_server

from asci import accounts
from asci.db import session_scope
from tests.support import free_port
from web import create_app
from web.oidc import username_from_claims


@pytest.fixture
def provider():
    """A minimal OIDC provider: discovery, token and userinfo endpoints."""
    port = free_port(20000, 30000)
    issuer = f"http://127.0.0.1:{port}"
    fake = Flask("fake-oidc")
    seen = {}

    @fake.get("/.well-known/openid-configuration")
    def discovery():
        return jsonify(issuer=issuer, authorization_endpoint=f"{issuer}/authorize",
                       token_endpoint=f"{issuer}/token", userinfo_endpoint=f"{issuer}/userinfo",
                       jwks_uri=f"{issuer}/jwks", response_types_supported=["code"])

    @fake.post("/token")
    def token():
        seen["token_form"] = request.form.to_dict()
        seen["token_auth"] = request.authorization
        if request.form.get("code") != "good-code":
            return jsonify(error="invalid_grant"), 400
        return jsonify(access_token="at-123", token_type="Bearer", expires_in=300)

    @fake.get("/userinfo")
    def userinfo():
        assert request.headers["Authorization"] == "Bearer at-123"
        return jsonify(sub="f-0001", preferred_username="Carol.Smith", email="carol@example.org", name="Carol Smith")

    server = make_server("127.0.0.1", port, fake, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield issuer, seen
    server.shutdown()


@pytest.fixture
def oidc_app(settings, provider):
    issuer, _ = provider
    return create_app(settings.replace(oidc_issuer=issuer, oidc_client_id="asci-web", oidc_client_secret="s3cret"),
                      {"TESTING": True})


def _start(client):
    reply = client.get("/login/oidc?next=/sessions")
    assert reply.status_code == 302
    return urlparse(reply.location), parse_qs(urlparse(reply.location).query)


def test_login_redirects_to_the_provider(oidc_app, provider):
    issuer, _ = provider
    client = oidc_app.test_client()
    assert "Facility single sign-on" in client.get("/login").get_data(as_text=True)
    location, query = _start(client)
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{issuer}/authorize"
    assert query["client_id"] == ["asci-web"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://localhost/login/oidc/callback"]
    assert "openid" in query["scope"][0] and query["state"][0]


def test_callback_logs_in_and_creates_the_account(settings, oidc_app, provider):
    _, seen = provider
    client = oidc_app.test_client()
    _, query = _start(client)
    reply = client.get(f"/login/oidc/callback?code=good-code&state={query['state'][0]}")
    assert reply.status_code == 302 and reply.location == "/sessions"
    assert seen["token_form"]["code"] == "good-code"
    with session_scope(settings) as db:
        carol = db.scalar(select(accounts.User).where(accounts.User.username == "carol.smith"))
        assert carol is not None and carol.password_hash is None and carol.email == "carol@example.org"
        assert carol.external_id.endswith("|f-0001")
        carol_id = carol.id
    with client.session_transaction() as flask_session:
        assert flask_session["user_id"] == carol_id
    # a second login finds the same account
    _, query = _start(client)
    client.get(f"/login/oidc/callback?code=good-code&state={query['state'][0]}")
    with session_scope(settings) as db:
        assert len(db.scalars(select(accounts.User).where(accounts.User.username == "carol.smith")).all()) == 1


def test_a_sign_on_name_never_takes_over_a_local_account(settings, oidc_app, provider):
    with session_scope(settings) as db:
        local = accounts.create_user(db, "carol.smith", "local password", is_admin=True)
        local_id = local.id
    client = oidc_app.test_client()
    _, query = _start(client)
    reply = client.get(f"/login/oidc/callback?code=good-code&state={query['state'][0]}")
    assert reply.location == "/sessions"  # logged in, as an account of its own with a distinct name
    with session_scope(settings) as db:
        local = db.get(accounts.User, local_id)
        assert local.external_id is None and local.username == "carol.smith"
        [new] = db.scalars(select(accounts.User).where(accounts.User.id != local_id)).all()
        assert new.username.startswith("carol.smith-") and new.external_id.endswith("|f-0001")
        assert new.self_registered and not new.is_admin
    with client.session_transaction() as flask_session:
        assert flask_session["user_id"] == new.id != local_id


def test_bad_state_or_code_is_refused(oidc_app):
    client = oidc_app.test_client()
    _, query = _start(client)
    reply = client.get("/login/oidc/callback?code=good-code&state=forged")
    assert reply.location == "/login"
    assert "Single sign-on failed" in client.get("/login").get_data(as_text=True)
    _, query = _start(client)
    assert client.get(f"/login/oidc/callback?code=bad&state={query['state'][0]}").location == "/login"
    with client.session_transaction() as flask_session:
        assert "user_id" not in flask_session


def test_oidc_is_off_without_an_issuer(app):
    client = app.test_client()
    assert client.get("/login/oidc").status_code == 404
    assert "single sign-on" not in client.get("/login").get_data(as_text=True)


def test_usernames_from_claims():
    assert username_from_claims({"preferred_username": "Dr Who"}) == "dr_who"
    assert username_from_claims({"sub": "123"}) == "_123"
    assert username_from_claims({}) == ""
