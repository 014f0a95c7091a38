"""Tenancy: what a guest was handed stops giving control, admin rights follow the caller, clean refusals
for odd input, a bounded login limiter, disabled accounts and removed members cut off, a CSP on pages."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from asci import accounts, rfb
from asci.db import session_scope
from broker.models import DesktopSession, Experiment, ExperimentMember
from tests.support import PASSWORD, csrf_of, login, stand_in_vnc
from tests.support import user_of as user
from web import vnc_tokens
from web.ratelimit import MAX_KEYS, SWEEP_EVERY, LoginLimiter


@pytest.fixture
def carol(settings, world):
    """A second member of alice's experiment E1."""
    with session_scope(settings) as db:
        row = accounts.create_user(db, f"carol-{world['suffix']}", PASSWORD)
        e1 = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        db.add(ExperimentMember(experiment_id=e1.id, user_id=row.id))
        db.flush()
        return {"id": row.id, "name": row.username}


@pytest.fixture
def desktop(settings, world):
    with session_scope(settings) as db:
        row = world["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current",
                                     world["e1"])
        info = {"id": row.id, "socket": row.vnc_socket, "view_password": row.vnc_view_password}
    with stand_in_vnc(info["socket"], 4242):
        yield info


def client_of(app, name):
    client = app.test_client()
    assert login(client, name).status_code == 302
    return client, csrf_of(client.get("/").get_data(as_text=True))


def passwd_path(socket_path: str) -> Path:
    """``<session folder>/secret/passwd`` of the session whose socket is ``<session folder>/vnc/vnc.sock``."""
    return Path(socket_path).parent.parent / "secret" / "passwd"


def password_file(socket_path: str) -> bytes:
    return passwd_path(socket_path).read_bytes()


def full_password(settings, session_id: int) -> str:
    with session_scope(settings) as db:
        return db.get(DesktopSession, session_id).vnc_password


# ------------------------------------------------------------------ downgrade, revoke, re-share
def test_a_password_a_guest_held_with_control_opens_nothing_after_a_downgrade_or_a_revocation(
        app, settings, world, carol, desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    guest, guest_csrf = client_of(app, carol["name"])
    url = f"/api/sessions/{desktop['id']}/shares"
    share_id = alice.post(url, json={"user": carol["name"], "mode": "control"},
                          headers={"X-CSRFToken": csrf}).json["id"]
    held = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf}).json
    assert held["mode"] == "control" and held["password"] == full_password(settings, desktop["id"])
    file_then = password_file(desktop["socket"])
    assert file_then == rfb.vncpasswd_file(held["password"], desktop["view_password"])

    seen = {held["password"]}
    for change in ("downgrade", "revoke", "view again"):
        if change == "downgrade":
            reply = alice.post(url, json={"user": carol["name"], "mode": "view"}, headers={"X-CSRFToken": csrf})
        elif change == "revoke":
            reply = alice.delete(f"{url}/{share_id}", headers={"X-CSRFToken": csrf})
        else:
            reply = alice.post(url, json={"user": carol["name"], "mode": "view"}, headers={"X-CSRFToken": csrf})
            share_id = reply.json["id"]
        assert reply.status_code in (200, 201), reply.json
        now = full_password(settings, desktop["id"])
        # TigerVNC reads this file at every authentication: the held password no longer matches it
        assert now not in seen and password_file(desktop["socket"]) == rfb.vncpasswd_file(now, desktop["view_password"])
        seen.add(now)
        if change != "revoke":
            answer = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf}).json
            assert answer["mode"] == "view" and answer["password"] == desktop["view_password"]
    # the owner's viewer gets the current password with its next token
    mine = alice.post(f"/sessions/{desktop['id']}/token", headers={"X-CSRFToken": csrf}).json
    assert mine["password"] == full_password(settings, desktop["id"]) not in (seen - {mine["password"]})
    # and the password file keeps its owner and mode (the session's uid, read-only)
    info = passwd_path(desktop["socket"]).stat()
    assert (info.st_uid, info.st_mode & 0o777) == (4242, 0o400)


def test_a_share_change_that_cannot_replace_the_password_changes_nothing(app, settings, world, carol, desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    before = full_password(settings, desktop["id"])
    passwd_path(desktop["socket"]).unlink()
    reply = alice.post(f"/api/sessions/{desktop['id']}/shares", json={"user": carol["name"], "mode": "control"},
                       headers={"X-CSRFToken": csrf})
    assert reply.status_code == 409 and "not changed" in reply.json["error"]
    assert alice.get(f"/api/sessions/{desktop['id']}/shares").json["shares"] == []
    assert full_password(settings, desktop["id"]) == before


# ------------------------------------------------------------------ disabled accounts, removed members
def admitted(settings, world, user_id: int, session_id: int, share_id: int = 0):
    """What the viewer proxy holds for a viewer it let in with a fresh token."""
    admission = vnc_tokens.admit(settings, world["broker"], vnc_tokens.make_token(settings, user_id, session_id, share_id))
    assert admission is not None
    return admission


def test_disabling_an_account_cuts_its_viewer_and_its_guests(app, settings, world, carol, desktop):
    """The viewer proxy asks ``still_admitted`` every ``viewer_check_interval_s`` (2 s) and closes who may not stay."""
    alice, csrf = client_of(app, world["names"]["alice"])
    share_id = alice.post(f"/api/sessions/{desktop['id']}/shares", json={"user": carol["name"], "mode": "control"},
                          headers={"X-CSRFToken": csrf}).json["id"]
    viewers = [admitted(settings, world, world["ids"]["alice"], desktop["id"]),
               admitted(settings, world, carol["id"], desktop["id"], share_id)]
    assert vnc_tokens.still_admitted(settings, viewers) == [True, True]
    with session_scope(settings) as db:
        accounts.disable_user(db, db.get(accounts.User, world["ids"]["alice"]))
    assert vnc_tokens.still_admitted(settings, viewers) == [False, False], "a disabled owner's guest stays"
    # during the grace period before the desktop is stopped, the guest gets no token at all
    guest, guest_csrf = client_of(app, carol["name"])
    refused = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf})
    assert refused.status_code == 409 and refused.json["final"] is True and "token" not in refused.json
    assert guest.get("/api/shared").json["shares"] == []
    token = vnc_tokens.make_token(settings, carol["id"], desktop["id"], share_id)
    assert vnc_tokens.resolve(settings, world["broker"], token) is None


def test_a_guest_taken_off_the_experiment_loses_the_share(app, settings, world, carol, desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    share_id = alice.post(f"/api/sessions/{desktop['id']}/shares", json={"user": carol["name"], "mode": "view"},
                          headers={"X-CSRFToken": csrf}).json["id"]
    viewer = admitted(settings, world, carol["id"], desktop["id"], share_id)
    assert vnc_tokens.still_admitted(settings, [viewer]) == [True]
    with session_scope(settings) as db:
        db.execute(delete(ExperimentMember).where(ExperimentMember.user_id == carol["id"]))
    assert vnc_tokens.still_admitted(settings, [viewer]) == [False], "a guest removed from the experiment kept watching"
    guest, guest_csrf = client_of(app, carol["name"])
    assert guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf}).json["final"] is True
    assert guest.get(f"/shared/{share_id}").status_code == 404
    assert alice.get(f"/api/sessions/{desktop['id']}/shares").json["shares"] == []


# ------------------------------------------------------------------ the caller's rights
def test_an_administrators_sessions_token_launches_only_where_the_administrator_is_a_member(app, settings, world):
    client = app.test_client()
    body = {"environment": world["env"], "experiment": world["e1"]}  # root is no member of E1
    narrow = client.post("/api/sessions", json=body, headers={"Authorization": "Bearer " + sessions_token(
        settings, world["ids"]["root"])})
    assert narrow.status_code == 403 and "not a member" in narrow.json["error"]
    with session_scope(settings) as db:
        assert db.scalars(select(DesktopSession)).all() == []
    wide = client.post("/api/sessions", json=body, headers={"Authorization": f"Bearer {world['tokens']['root']}"})
    assert wide.status_code == 201, wide.json  # with the admin scope it acts as an administrator


def sessions_token(settings, user_id: int) -> str:
    with session_scope(settings) as db:
        return accounts.issue_token(db, db.get(accounts.User, user_id), scopes="sessions")


# ------------------------------------------------------------------ odd input: 4xx, never 500
@pytest.mark.parametrize("raw", ['{"environment": "\\ud800", "experiment": "E"}',
                                 '{"environment": "mx", "experiment": "\\udfff"}',
                                 '{"\\ud83d": 1}', '{"environment": "a\\ud83d\\u0041"}'])
def test_a_lone_surrogate_in_any_json_string_is_a_400(app, world, raw):
    client = app.test_client()
    for url in ("/api/sessions", f"/api/sessions/1/shares"):
        reply = client.post(url, data=raw, content_type="application/json",
                            headers={"Authorization": f"Bearer {world['tokens']['alice']}"})
        assert reply.status_code in (400, 404), (url, reply.status_code, reply.get_data(as_text=True)[:200])
        assert reply.is_json
    reply = client.post("/api/sessions", data=raw, content_type="application/json",
                        headers={"Authorization": f"Bearer {world['tokens']['alice']}"})
    assert reply.status_code == 400 and "surrogate" in reply.json["error"]


HUGE = [2**63, 2**63 + 1, 2**64, 10**30]
PAGES = [("get", "/sessions/{}"), ("get", "/sessions/{}/progress"), ("get", "/sessions/{}/state"),
         ("post", "/sessions/{}/token"), ("post", "/sessions/{}/stop"), ("get", "/sessions/{}/desktop"),
         ("get", "/shared/{}"), ("post", "/shared/{}/token")]


@pytest.mark.parametrize("number", HUGE)
def test_ids_beyond_what_a_database_holds_are_404_on_every_route(app, world, number):
    alice, csrf = client_of(app, world["names"]["alice"])
    root, root_csrf = client_of(app, world["names"]["root"])
    for method, pattern in PAGES:
        reply = getattr(alice, method)(pattern.format(number), headers={"X-CSRFToken": csrf})
        assert reply.status_code == 404, (pattern, reply.status_code)
    rules = [rule for rule in app.url_map.iter_rules() if any(type(c).__name__ == "BoundedInt"
                                                              for c in rule._converters.values())]
    assert len(rules) >= len(PAGES)
    for rule in rules:  # every <int:...> route, administrators' pages included
        path = rule.rule
        for name in rule._converters:
            path = path.replace(f"<int:{name}>", str(number))
        if "<" in path:  # another kind of argument as well: fill it with something plain
            import re
            path = re.sub(r"<[^>]+>", "x", path)
        method = "get" if "GET" in rule.methods else "post"
        reply = getattr(root, method)(path, headers={"X-CSRFToken": root_csrf})
        assert reply.status_code == 404, (path, reply.status_code)
    # the JSON API's ids too
    api = app.test_client()
    for path in (f"/api/sessions/{number}", f"/api/sessions/{number}/shares"):
        reply = api.get(path, headers={"Authorization": f"Bearer {world['tokens']['alice']}"})
        assert reply.status_code in (400, 404) and reply.is_json, (path, reply.status_code)


# ------------------------------------------------------------------ the login limiter
def counters(limiter: LoginLimiter) -> int:
    """How many counters the limiter holds (both of its tables)."""
    return len(limiter._by_pair) + len(limiter._by_address)


def test_the_login_limiter_stays_bounded_under_a_spray_of_names():
    now = [0.0]
    limiter = LoginLimiter(5, 60, max_per_address=30, clock=lambda: now[0])
    for index in range(5000):  # asking about names adds nothing
        assert limiter.retry_after(f"name-{index}", "10.0.0.1") == 0
    assert counters(limiter) == 0
    tracemalloc.start()
    try:
        for index in range(150_000):  # 150k refused names from 150k/8 addresses, a few seconds apart
            limiter.failed(f"name-{index}", f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 // 8}")
            now[0] += 0.0005
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counters(limiter) <= 2 * MAX_KEYS
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB for the limiter"
    # the counters that matter still work: the latest name is slowed after its failures...
    for _ in range(5):
        limiter.failed("victim", "192.0.2.9")
    assert limiter.retry_after("victim", "192.0.2.9") > 0
    # ...and once the window has passed, everything is forgotten on the next failure
    now[0] += 61
    limiter.failed("late", "192.0.2.10")
    for index in range(SWEEP_EVERY):
        limiter.failed(f"after-{index}", "192.0.2.11")
    assert counters(limiter) <= SWEEP_EVERY + 3


# ------------------------------------------------------------------ pages under a Content-Security-Policy
def test_pages_send_a_content_security_policy_and_carry_no_inline_script(app, settings, world):
    import re

    alice, _ = client_of(app, world["names"]["alice"])
    for path in ("/", "/login", "/sessions"):
        policy = alice.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
        assert f"ws://localhost:{settings.websockify_port}" in policy  # the viewer's WebSocket
    templates = Path(__file__).resolve().parents[3] / "web" / "templates"
    for template in templates.rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text), f"{template.name}: an inline event handler"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{template.name}: an inline script"
