"""A real OpenID Connect provider (django-oidc-provider on 127.0.0.1, started once per test session)
and ASCI web applications served on the one port whose callback the provider knows."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest

from tests.support import free_port, need, serving
from tests.support_oidc.provider import OIDCProvider

CLIENT_ID, CLIENT_SECRET = "asci-web", "asci-web-secret-for-tests"
CONSENT_CLIENT_ID = "asci-web-consent"
PASSWORD = "provider-pw-123"
# The people the provider knows. Three of them ask for names that fold to j_smith; mallory's
# provider account carries bob's e-mail address, unverified.
USERS = [
    {"username": "alice", "email": "alice@example.org", "first_name": "Alice", "last_name": "Liddell"},
    {"username": "carol", "email": "carol@example.org", "first_name": "Carol", "last_name": "Jones"},
    {"username": "J+Smith", "email": "jplus@example.org"},
    {"username": "jésmith", "email": "jesmith@example.org"},
    {"username": "j_smith@other-idp", "email": "jsmith@other-idp.example"},
    {"username": "j_smith", "email": "j.smith@example.org", "first_name": "Jo", "last_name": "Smith"},
    {"username": "mallory", "email": "bob@example.org", "last_name": "unverified"},
]


@dataclass
class Provider:
    """A running provider and the application port registered with it."""

    op: OIDCProvider
    app_port: int
    subjects: dict = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.op.issuer


def _provider(tmp_path_factory, name: str, **options) -> Provider:
    need(_django_installed(), "Django and django-oidc-provider are not installed (pip install -e '.[test]')")
    app_port = free_port(21000, 29000)
    callback = f"http://127.0.0.1:{app_port}/login/oidc/callback"
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [callback]},
               {"client_id": CONSENT_CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [callback],
                "require_consent": True}]
    op = OIDCProvider(tmp_path_factory.mktemp(name), port=free_port(30000, 40000),
                      users=[{**user, "password": PASSWORD} for user in USERS], clients=clients, **options)
    op.start()
    return Provider(op, app_port, op.subjects)


def _django_installed() -> bool:
    try:
        import django  # noqa: F401
        import oidc_provider  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """The provider: ID tokens carry only the subject, profile and e-mail come from userinfo (its
    default, and what OpenID Connect Core describes for the code flow)."""
    provider = _provider(tmp_path_factory, "oidc-provider")
    yield provider
    provider.op.stop()


@pytest.fixture
def oidc_site(settings):
    """``oidc_site(provider, client_id=CLIENT_ID)``: a context manager serving a fresh ASCI application
    wired to ``provider`` on the provider's registered port; yields ``(settings, base_url)``."""
    @contextlib.contextmanager
    def make(provider: Provider, client_id: str = CLIENT_ID):
        from web import create_app

        site = settings.replace(public_url=f"http://127.0.0.1:{provider.app_port}", oidc_issuer=provider.issuer,
                                oidc_client_id=client_id, oidc_client_secret=CLIENT_SECRET)
        with serving(create_app(site), port=provider.app_port) as url:
            yield site, url

    return make
