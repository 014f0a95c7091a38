"""Single sign-on against a real OpenID Connect provider (django-oidc-provider on 127.0.0.1):
accounts come from the provider's subject, names never fold two identities into one, memberships
granted to an identity follow it, and every failure of the flow is a failed login, not a 500."""

from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import select

import broker
from asci import accounts
from asci.db import session_scope
from broker.errors import ImportFailed
from tests.integration.web.conftest import CONSENT_CLIENT_ID, PASSWORD, _provider
from tests.support_oidc.provider import sign_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def whoami(page: str) -> str | None:
    match = re.search(r'id="whoami">([^<]*)<', page)
    return match.group(1) if match else None


def account(settings, **where) -> accounts.User | None:
    with session_scope(settings) as db:
        statement = select(accounts.User)
        for key, value in where.items():
            statement = statement.where(getattr(accounts.User, key) == value)
        row = db.scalar(statement)
        if row is not None:
            db.expunge(row)
        return row


def test_discovery_names_the_issuer_and_its_keys(oidc_provider):
    meta = requests.get(oidc_provider.issuer + "/.well-known/openid-configuration", timeout=5).json()
    assert meta["issuer"] == oidc_provider.issuer and meta["userinfo_endpoint"]
    assert requests.get(meta["jwks_uri"], timeout=5).json()["keys"][0]["kty"] == "RSA"


def test_code_flow_creates_an_account_bound_to_the_subject(oidc_provider, oidc_site):
    with oidc_site(oidc_provider) as (settings, url):
        http = requests.Session()
        final = sign_in(http, url + "/login/oidc?next=/sessions", "alice", PASSWORD)
        assert final.url == url + "/sessions" and whoami(final.text) == "Alice Liddell"
        alice = account(settings, username="alice")
        # the ID token carries only the subject: name and e-mail were read from the userinfo endpoint
        assert alice.external_id == f"{oidc_provider.issuer}|{oidc_provider.subjects['alice']}"
        assert alice.email == "alice@example.org" and alice.self_registered and alice.password_hash is None
        # a second sign-on (the provider remembers the browser) finds the same account
        http.cookies.clear(domain="127.0.0.1", path="/", name="asci_session")
        again = http.get(url + "/login/oidc", timeout=15)
        assert whoami(again.text) == "Alice Liddell"
        with session_scope(settings) as db:
            assert len(accounts.list_users(db)) == 1


def test_names_never_fold_two_identities_into_one(oidc_provider, oidc_site):
    """SSO name squatting: J+Smith, jésmith and j_smith@other-idp all fold to 'j_smith'; none of them
    gets that name, which only the provider's own 'j_smith' receives, even signing in last."""
    with oidc_site(oidc_provider) as (settings, url):
        for username in ("J+Smith", "jésmith", "j_smith@other-idp", "j_smith"):
            sign_in(requests.Session(), url + "/login/oidc", username, PASSWORD)
        with session_scope(settings) as db:
            names = {user.external_id.split("|")[1]: user.username for user in accounts.list_users(db)}
        subjects = oidc_provider.subjects
        assert names[subjects["j_smith"]] == "j_smith"
        others = [names[subjects[who]] for who in ("J+Smith", "jésmith", "j_smith@other-idp")]
        assert len(set(others)) == 3 and all(re.fullmatch(r"j_smith.*-[0-9a-f]{8}", name) for name in others)


def test_a_local_name_is_never_taken_over_and_a_linked_account_is_used(oidc_provider, oidc_site):
    with oidc_site(oidc_provider) as (settings, url):
        with session_scope(settings) as db:
            local = accounts.create_user(db, "alice", "local password", is_admin=True)
            carol = accounts.create_user(db, "carol-local", "another password")
            accounts.link_identity(db, carol, oidc_provider.issuer, oidc_provider.subjects["carol"])
            local_id, carol_id = local.id, carol.id
        final = sign_in(requests.Session(), url + "/login/oidc", "alice", PASSWORD)
        assert whoami(final.text) == "Alice Liddell"
        sso_alice = account(settings, external_id=f"{oidc_provider.issuer}|{oidc_provider.subjects['alice']}")
        assert sso_alice.id != local_id and sso_alice.username.startswith("alice-") and not sso_alice.is_admin
        assert account(settings, id=local_id).external_id is None
        # carol's identity was linked to a local account by an administrator: she signs into that one
        sign_in(requests.Session(), url + "/login/oidc", "carol", PASSWORD)
        assert account(settings, external_id=f"{oidc_provider.issuer}|{oidc_provider.subjects['carol']}").id == carol_id


def test_memberships_bind_to_the_identity_not_to_a_name(oidc_provider, oidc_site):
    subjects = oidc_provider.subjects
    with oidc_site(oidc_provider) as (settings, url):
        with session_scope(settings) as db:
            counts = broker.import_rows(settings, db, [{"code": "MX-9", "members": [
                f"sub:{subjects['alice']}", "email:carol@example.org", "email:bob@example.org"]}],
                issuer=oidc_provider.issuer)
        assert counts["memberships_pending"] == 3 and counts["users_created"] == 0
        for who in ("alice", "carol", "mallory"):  # mallory's provider claims bob's address, unverified
            sign_in(requests.Session(), url + "/login/oidc", who, PASSWORD)
        with session_scope(settings) as db:
            members = set(next(e for e in broker.all_experiments(db) if e.code == "MX-9").members)
        assert members == {"alice", "carol"}
        # the real j_smith signs in and owns the name; a later import naming 'j_smith' does not bind by
        # name to an account whose name its owner chose: it must name the identity
        sign_in(requests.Session(), url + "/login/oidc", "j_smith", PASSWORD)
        with pytest.raises(ImportFailed, match="created by single sign-on"):
            with session_scope(settings) as db:
                broker.import_rows(settings, db, [{"code": "MX-10", "members": ["j_smith"]}], issuer=oidc_provider.issuer)
        with session_scope(settings) as db:
            added = broker.import_rows(settings, db, [{"code": "MX-10", "members": [f"sub:{subjects['j_smith']}"]}],
                                       issuer=oidc_provider.issuer)
        assert added["memberships_added"] == 1


def test_a_disabled_account_cannot_sign_in(oidc_provider, oidc_site):
    with oidc_site(oidc_provider) as (settings, url):
        sign_in(requests.Session(), url + "/login/oidc", "alice", PASSWORD)
        with session_scope(settings) as db:
            accounts.disable_user(db, accounts.get_user(db, "alice"))
        final = sign_in(requests.Session(), url + "/login/oidc", "alice", PASSWORD)
        assert "This account is disabled." in final.text and whoami(final.text) is None


def test_declined_consent_is_a_failed_login(oidc_provider, oidc_site):
    with oidc_site(oidc_provider, client_id=CONSENT_CLIENT_ID) as (settings, url):
        final = sign_in(requests.Session(), url + "/login/oidc", "alice", PASSWORD, allow_consent=False)
        assert final.url.startswith(url + "/login") and "Single sign-on failed" in final.text
        allowed = sign_in(requests.Session(), url + "/login/oidc", "alice", PASSWORD)
        assert whoami(allowed.text) == "Alice Liddell"


@pytest.fixture(scope="module")
def expired_provider(tmp_path_factory):
    """A provider whose ID tokens expired ten minutes ago (beyond Authlib's two minutes of leeway)."""
    provider = _provider(tmp_path_factory, "oidc-expired", idtoken_expire_s=-600)
    yield provider
    provider.op.stop()


def test_an_expired_id_token_is_a_failed_login_not_a_500(expired_provider, oidc_site):
    with oidc_site(expired_provider) as (settings, url):
        final = sign_in(requests.Session(), url + "/login/oidc", "alice", PASSWORD)
        assert final.status_code == 200 and final.url.startswith(url + "/login")
        assert "Single sign-on failed" in final.text and whoami(final.text) is None
        with session_scope(settings) as db:
            assert accounts.list_users(db) == []
