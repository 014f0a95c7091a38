"""One test (at least) per finding of the route review (issue 12); each fails on the code before the fix.

Single sign-on name squatting and the expired ID token are proven against a real provider in
``test_oidc_provider.py``; the schemathesis findings in ``test_api_contract.py`` as well as here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import statistics
import subprocess
import time

import pytest
from sqlalchemy import select

from asci import accounts
from asci.db import session_scope, utcnow
from broker import cull
from tests.support import (PASSWORD, csrf_of, forge_rpm_header, login, make_world, publisher, require_programs,
                           rpm_file)
from web import create_app

pytestmark = pytest.mark.integration

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16, memory_bytes=64 << 30, max_sessions=10)]
VIEWER = "asci-demo-viewer-1.0-1.noarch.rpm"


@pytest.fixture
def site(settings, make_broker):
    """``(settings, world, app)``: alice, bob (sessions tokens), root (admin token), a fake backend."""
    world = make_world(settings, NODES)
    world["broker"] = make_broker(settings)
    world["backend"] = world["broker"].backend
    return settings, world, create_app(settings, {"TESTING": True}, broker=world["broker"])


def bearer(world, who):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def logged_in(app, world, who, **options):
    client = app.test_client()
    assert login(client, world["names"][who], **options).status_code == 302
    return client


def launch(client, world, **headers):
    return client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"]},
                       headers=headers)


# ------------------------------------------------------------------ publishing rights

def _upload(client, token, path, repo="beamline"):
    return client.post(f"/api/repos/{repo}/packages", headers={"Authorization": f"Bearer {token}"},
                       data={"file": [(path.open("rb"), path.name)]})


def test_any_token_no_longer_publishes_into_any_repository(site, fixture_rpms):
    settings, world, app = site
    client = app.test_client()
    viewer = fixture_rpms / VIEWER
    granted = publisher(settings, "scientist", "beamline")
    other_repo = publisher(settings, "other", "mx")  # a publisher of another repository
    with session_scope(settings) as db:
        ungranted = accounts.issue_token(db, accounts.get_user(db, world["names"]["bob"]), scopes="publish:beamline")
    assert _upload(client, world["tokens"]["alice"], viewer).status_code == 403  # a sessions token
    assert _upload(client, other_repo, viewer).status_code == 403  # publish:mx, not publish:beamline
    refused = _upload(client, ungranted, viewer)  # the scope, but no grant
    assert refused.status_code == 403 and "asci repo grant beamline" in refused.json["error"]
    assert not list(settings.repos_dir.rglob("*.rpm"))
    assert _upload(client, granted, viewer).status_code == 201
    with session_scope(settings) as db:
        import rpmrepo

        rpmrepo.revoke_publisher(db, "beamline", accounts.get_user(db, "scientist"))
    assert _upload(client, granted, fixture_rpms / "mx-lib-2.0-1.noarch.rpm").status_code == 403


def test_uploading_to_a_repository_that_does_not_exist_creates_nothing(site, fixture_rpms):
    settings, world, app = site
    token = publisher(settings, "scientist", "beamline", scopes="publish:*")
    reply = _upload(app.test_client(), token, fixture_rpms / VIEWER, repo="brand-new")
    assert reply.status_code == 404 and "asci repo create brand-new" in reply.json["error"]
    assert not (settings.repos_dir / "brand-new").exists()


# ------------------------------------------------------------------ tokens and accounts

def test_tokens_expire_and_can_be_revoked(site):
    settings, world, app = site
    client = app.test_client()
    with session_scope(settings) as db:
        alice = accounts.get_user(db, world["names"]["alice"])
        token = accounts.issue_token(db, alice, lifetime=dt.timedelta(days=1))
        row = accounts.list_tokens(db, alice)[-1]
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    reply = client.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 401 and "expired" in reply.json["error"] and reply.headers["WWW-Authenticate"]
    assert client.get("/api/sessions", headers=bearer(world, "alice")).status_code == 200
    with session_scope(settings) as db:
        alice = accounts.get_user(db, world["names"]["alice"])
        [active] = accounts.list_tokens(db, alice)
        accounts.revoke_token(db, active.id, alice)
    assert client.get("/api/sessions", headers=bearer(world, "alice")).status_code == 401


def test_a_disabled_user_loses_login_cookie_tokens_and_finally_desktops(site):
    settings, world, app = site
    browser = logged_in(app, world, "alice")
    assert launch(app.test_client(), world, **bearer(world, "alice")).status_code == 201
    with session_scope(settings) as db:
        accounts.disable_user(db, accounts.get_user(db, world["names"]["alice"]))
    assert browser.get("/api/sessions").status_code == 401
    assert browser.get("/").status_code == 302
    assert app.test_client().get("/api/sessions", headers=bearer(world, "alice")).status_code == 401
    assert login(app.test_client(), world["names"]["alice"]).status_code == 401
    broker = world["broker"]
    with session_scope(settings) as db:
        assert cull(broker, db)["disabled"] == 0  # within the grace period
        later = utcnow() + dt.timedelta(seconds=settings.disabled_user_grace_s + 1)
        assert cull(broker, db, now=later)["disabled"] == 1
    assert world["backend"].running == {}


def test_a_password_change_ends_existing_cookies(site):
    settings, world, app = site
    browser = logged_in(app, world, "alice")
    with session_scope(settings) as db:
        accounts.change_password(db, accounts.get_user(db, world["names"]["alice"]), "a-brand-new-password")
    assert browser.get("/api/sessions").status_code == 401
    assert login(app.test_client(), world["names"]["alice"], "a-brand-new-password").status_code == 302


def test_a_stolen_cookie_dies_with_logout(site):
    settings, world, app = site
    browser = logged_in(app, world, "alice")
    cookie = browser.get_cookie("asci_session").value
    thief = app.test_client()
    thief.set_cookie("asci_session", cookie)
    assert thief.get("/api/sessions").status_code == 200
    page = browser.get("/").get_data(as_text=True)
    assert browser.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert thief.get("/api/sessions").status_code == 401
    thief.set_cookie("asci_session", cookie)
    assert thief.delete("/api/sessions/1").status_code == 401  # not even a CSRF check: nobody is logged in
    assert thief.get("/").status_code == 302


# ------------------------------------------------------------------ logins

def test_failures_behind_a_trusted_proxy_never_lock_the_user_out(site):
    settings, world, _ = site
    app = create_app(settings.replace(trusted_proxies=("10.0.0.1",), login_max_attempts=3), {"TESTING": True})
    alice = world["names"]["alice"]
    proxy = {"environ": {"REMOTE_ADDR": "10.0.0.1"}}
    attacker = app.test_client()
    statuses = [login(attacker, alice, "wrong-password", headers={"X-Forwarded-For": "203.0.113.9"},
                      **proxy).status_code for _ in range(8)]
    assert statuses[:3] == [401, 401, 401] and 429 in statuses
    real_user = app.test_client()  # the same proxy address, another client behind it
    assert login(real_user, alice, headers={"X-Forwarded-For": "198.51.100.7"}, **proxy).status_code == 302


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(site):
    settings, world, _ = site
    app = create_app(settings.replace(login_max_attempts=2), {"TESTING": True})
    alice = world["names"]["alice"]
    attacker = app.test_client()
    for number in range(3):  # inventing a new X-Forwarded-For each time does not escape the delay
        reply = login(attacker, alice, "wrong-password", headers={"X-Forwarded-For": f"192.0.2.{number}"})
    assert reply.status_code == 429
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "10.0.0.1"},
                                  headers={"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.0.0.2"}):
        from asci.http import client_address

        assert client_address(settings) == "10.0.0.1"  # no trusted proxies: the peer
        trusted = settings.replace(trusted_proxies=("10.0.0.0/24",))
        assert client_address(trusted) == "1.2.3.4"  # the nearest untrusted hop; 6.6.6.6 was made up


def test_unknown_names_take_as_long_as_known_ones(site):
    settings, world, _ = site
    app = create_app(settings.replace(login_max_attempts=1000, login_max_per_address=100000), {"TESTING": True})
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))

    def attempt(name):
        started = time.perf_counter()
        reply = client.post("/login", data={"username": name, "password": "wrong-password", "csrf_token": token})
        assert reply.status_code == 401
        return time.perf_counter() - started

    known, unknown = [], []
    for _ in range(7):
        known.append(attempt(world["names"]["alice"]))
        unknown.append(attempt("nobody-by-this-name"))
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 1 / 3 < ratio < 3, (known, unknown)  # was about 50 before: no hash was checked for unknown names


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example",
                                    "https://evil.example/", "javascript:alert(1)", "/ /evil.example",
                                    "/\r\nSet-Cookie: x=1"])
def test_next_never_leaves_the_site(site, target):
    settings, world, app = site
    client = app.test_client()
    token = csrf_of(client.get("/login", query_string={"next": target}).get_data(as_text=True))
    reply = client.post("/login", data={"username": world["names"]["alice"], "password": PASSWORD,
                                        "csrf_token": token, "next": target})
    assert reply.status_code == 302 and reply.location == "/"
    again = client.get("/login", query_string={"next": target})  # already logged in: straight on
    assert again.status_code == 302 and again.location == "/"
    assert client.get("/login?next=/sessions%3Fall%3D1").location == "/sessions?all=1"


# ------------------------------------------------------------------ input

class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that counts what the application reads."""

    def __init__(self, size: int) -> None:
        self.size, self.position, self.consumed = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the body by seeking to its end and back
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self.size - self.position))
        buffer[:count] = b" " * count
        self.position += count
        self.consumed += count
        return count


def test_large_bodies_are_refused_unread_and_anonymous_ones_are_never_parsed(site):
    settings, world, app = site
    client = app.test_client()
    big = 150 * 1024 * 1024
    for headers, status in (({}, 401), (bearer(world, "alice"), 413)):
        stream = CountingStream(big)
        reply = client.post("/api/sessions", input_stream=stream, content_length=big, headers=headers,
                            content_type="application/json")
        assert reply.status_code == status and reply.is_json
        assert stream.consumed == 0
    anonymous = client.post("/api/sessions", json={"x": 1})
    assert anonymous.status_code == 401 and "environment" not in anonymous.json["error"]  # no schema hints
    form = client.post("/login", data={"username": "x" * (2 * 1024 * 1024)})
    assert form.status_code == 413
    assert client.post("/api/builds", data="[" * 100_000, content_type="application/json").status_code == 401


@pytest.mark.parametrize("method, path, body", [
    ("get", "/api/sessions/²", None),
    ("get", "/api/sessions/9223372036854775808", None),
    ("delete", "/api/sessions/99999999999999999999999", None),
    ("post", "/api/sessions", '{"environment": "e", "experiment": "x", "cpus": 1' + "0" * 400 + "}"),
    ("post", "/api/sessions", '{"environment": "e", "experiment": "x", "memory": 1e400}'),
    ("post", "/api/sessions", "[" * 100_000 + "]" * 100_000),
    ("post", "/api/sessions", '{"a":' * 50 + "1" + "}" * 50),
    ("post", "/api/builds", "[" * 100_000 + "]" * 100_000),
    ("get", "/api/builds?limit=²", None),
    ("get", "/api/builds/99999999999999999999", None),
])
def test_malformed_input_is_a_4xx_never_a_500(site, method, path, body):
    settings, world, app = site
    kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
    reply = getattr(app.test_client(), method)(path, headers=bearer(world, "root"), **kwargs)
    assert 400 <= reply.status_code < 500 and reply.is_json, reply.get_data(as_text=True)[:200]


@pytest.mark.postgres
def test_nul_characters_never_reach_postgresql(pg_settings, make_broker):
    world = make_world(pg_settings, NODES)
    client = create_app(pg_settings, {"TESTING": True}, broker=make_broker(pg_settings)).test_client()
    auth = bearer(world, "root")
    assert client.post("/api/sessions", json={"environment": "a\x00b", "experiment": "x"},
                       headers=auth).status_code == 400
    assert client.post("/api/builds", json={"environment": "a\x00b"}, headers=auth).status_code == 400
    assert client.get("/api/builds?environment=a%00b", headers=auth).status_code == 400
    assert client.get("/api/repos/beamline/packages?all=%00").status_code == 400
    assert login(client, "alice\x00", "x").status_code == 401
    assert client.get("/api/sessions/1%00", headers=auth).status_code == 400


def test_json_routes_answer_json_errors(site):
    settings, world, app = site
    client = app.test_client()
    for path in ("/api/sessions", "/healthz", "/metrics", "/api/builds"):
        reply = client.put(path, headers=bearer(world, "root"))
        assert reply.status_code == 405 and reply.is_json and "GET" in reply.headers["Allow"], path
    browser = logged_in(app, world, "alice")
    forged = browser.delete("/api/sessions/1")  # the login cookie alone, no CSRF token: a forged request
    assert forged.status_code == 400 and forged.is_json and forged.json["kind"] == "CSRFError"
    anonymous = client.post("/api/sessions", data={"environment": "x"})  # a cross-site form, no login
    assert anonymous.status_code == 401 and anonymous.is_json
    assert client.get("/api/sessions?all=yes", headers=bearer(world, "root")).status_code == 400
    assert client.get("/api/sessions?colour=red", headers=bearer(world, "root")).status_code == 400
    empty = client.post("/api/sessions", json={"environment": "", "experiment": ""}, headers=bearer(world, "root"))
    assert empty.status_code == 400


# ------------------------------------------------------------------ RPM headers

def test_a_newline_in_the_summary_cannot_forge_header_fields(settings, fixture_rpms, tmp_path):
    import rpmrepo

    require_programs("rpmkeys")
    forged = forge_rpm_header(rpm_file(fixture_rpms / "forgery", "header-forgery", "1.0"), tmp_path / "forged.rpm")
    # a valid package: its digests match, and the old line-by-line parser read BUILDTIME 0, evil-dep, kernel
    check = subprocess.run(["rpmkeys", "-K", "--nosignature", "--dbpath", str(tmp_path / "db"), str(forged)],
                           capture_output=True, text=True)
    assert "digests OK" in check.stdout, check.stdout + check.stderr
    with pytest.raises(rpmrepo.InvalidPackage, match="summary in the RPM header contains control characters"):
        rpmrepo.publish(settings, [forged])
    with session_scope(settings) as db:
        assert rpmrepo.list_packages(db, "beamline") == []
    # the unforged package publishes, with exactly its own build time, requires and provides
    original = rpmrepo.publish(settings, [rpm_file(fixture_rpms / "forgery", "header-forgery", "1.0")])
    with session_scope(settings) as db:
        row = rpmrepo.find_package(db, "beamline", original.packages[0].nevra)
        assert row.buildtime.year > 2000 and row.requires == [] and "kernel" not in row.provides
        assert row.summary == "Nice tool~BUILDTIME^0~REQ^evil-dep~PROV^kernel"


# ------------------------------------------------------------------ exposure

def test_anonymous_healthz_says_only_ok_and_calls_nothing(site, monkeypatch):
    settings, world, app = site
    import web.health

    calls = []
    monkeypatch.setattr(web.health, "docker_status", lambda s: calls.append("docker") or {"ok": True, "hosts": {}})
    monkeypatch.setattr(web.health, "registry_status", lambda s: calls.append("registry") or {"ok": True})
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"} and calls == []
    assert logged_in(app, world, "alice").get("/healthz").json == {"status": "ok"}
    detailed = client.get("/healthz", headers=bearer(world, "root")).json
    assert detailed["status"] == "ok" and set(detailed["checks"]) == {"database", "docker", "registry"}
    with session_scope(settings) as db:
        robot = accounts.create_user(db, "prometheus")
        metrics_token = accounts.issue_token(db, robot, scopes="metrics")
    monitor = {"Authorization": f"Bearer {metrics_token}"}
    assert "checks" in client.get("/healthz", headers=monitor).json
    assert client.get("/healthz", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_need_an_administrator_or_a_metrics_token(site):
    settings, world, app = site
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(world, "alice")).status_code == 403
    assert client.get("/metrics", headers=bearer(world, "root")).status_code == 200
    assert logged_in(app, world, "root").get("/metrics").status_code == 200
    with session_scope(settings) as db:
        token = accounts.issue_token(db, accounts.create_user(db, "prometheus"), scopes="metrics")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_publisher_ids_are_for_administrators(site, fixture_rpms):
    import rpmrepo

    settings, world, app = site
    rpmrepo.publish(settings, [fixture_rpms / VIEWER], user=world["ids"]["alice"])
    client = app.test_client()
    [anonymous] = client.get("/api/repos/beamline/packages").json["packages"]
    assert "published_by_id" not in anonymous
    [seen] = client.get("/api/repos/beamline/packages", headers=bearer(world, "root")).json["packages"]
    assert seen["published_by_id"] == world["ids"]["alice"]
    assert client.get("/api/repos/nothere/packages").status_code == 404


# ------------------------------------------------------------------ single sign-on names

def test_sign_on_names_that_fold_get_a_suffix(settings):
    from web.oidc import account_name

    with session_scope(settings) as db:
        accounts.create_user(db, "taken")
        assert account_name(db, {"preferred_username": "J_Smith"}, "i|1") == "j_smith"  # only lower-cased
        for claims in ({"preferred_username": "J+Smith"}, {"preferred_username": "jésmith"},
                       {"preferred_username": "j_smith@other-idp"}, {"preferred_username": "taken"}, {"sub": "x"}):
            name = account_name(db, claims, "i|2")
            assert name.endswith("-" + hashlib.sha256(b"i|2").hexdigest()[:8]), (claims, name)
        assert db.scalar(select(accounts.User).where(accounts.User.username == "taken")).external_id is None


def test_experiment_import_reads_identities(settings):
    import broker

    with session_scope(settings) as db:
        counts = broker.import_rows(settings, db, [{"code": "X-1", "members": "sub:abc email:Carol@Example.org dave"}],
                                    issuer="https://idp.example")
        assert counts == {"experiments_created": 1, "experiments_updated": 0, "users_created": 1,
                          "memberships_added": 1, "memberships_pending": 2}
        with pytest.raises(broker.ImportFailed, match="no identity provider"):
            broker.import_rows(settings, db, [{"code": "X-2", "members": ["sub:abc"]}])
        with pytest.raises(broker.ImportFailed, match="not an e-mail address"):
            broker.import_rows(settings, db, [{"code": "X-3", "members": [{"email": "nobody"}]}])
        user = accounts.create_user(db, "carol-sso")
        accounts.link_identity(db, user, "https://idp.example", "abc")
        assert broker.claim_memberships(db, user, verified_email="carol@example.org") == 1  # one experiment, once
        assert broker.claim_memberships(db, user, verified_email="carol@example.org") == 0
