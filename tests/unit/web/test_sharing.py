"""Sharing a running desktop within its experiment: who may be invited, what a guest gets, revocation,
the end of the session, who is connected, and the audit log."""


import pytest

from asci import accounts
from asci.db import session_scope
from broker.models import DesktopSession, ExperimentMember, Experiment
from sqlalchemy import select
from tests.support import PASSWORD, csrf_of, login, stand_in_vnc
from tests.support import user_of as user
from web import vnc_tokens


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
def alices_desktop(settings, world):
    with session_scope(settings) as db:
        row = world["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current",
                             world["e1"])
        info = {"id": row.id, "socket": row.vnc_socket, "password": row.vnc_password,
                "view_password": row.vnc_view_password}
    with stand_in_vnc(info["socket"], 4242):
        yield info


def client_of(app, name):
    client = app.test_client()
    assert login(client, name).status_code == 302
    return client, csrf_of(client.get("/").get_data(as_text=True))


def test_only_members_of_the_experiment_can_be_invited_and_only_by_the_owner(app, world, carol, alices_desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    url = f"/api/sessions/{alices_desktop['id']}/shares"
    listed = alice.get(url)
    assert listed.status_code == 200 and listed.json["members"] == [carol["name"]] and listed.json["shares"] == []
    for body, status in (({"user": world["names"]["bob"], "mode": "view"}, 403),  # bob is not in E1
                         ({"user": "nobody-at-all"}, 403),  # the same answer: names are not probed
                         ({"user": world["names"]["alice"]}, 422),
                         ({"user": carol["name"], "mode": "admin"}, 400),
                         ({"user": carol["name"], "extra": 1}, 400),
                         ({"user": 7}, 400), ([], 400)):
        reply = alice.post(url, json=body, headers={"X-CSRFToken": csrf})
        assert reply.status_code == status, (body, reply.json)
        assert reply.is_json and reply.json["error"]
    assert alice.get(url).json["shares"] == []  # nothing was written by the refusals
    # another user, or an administrator, cannot share (or see the shares of) alice's desktop
    for who in ("bob", "root"):
        other, other_csrf = client_of(app, world["names"][who])
        assert other.post(url, json={"user": carol["name"]}, headers={"X-CSRFToken": other_csrf}).status_code == 404
        assert other.get(url).status_code == 404


def test_a_guest_opens_the_shared_desktop_with_their_own_login_and_the_view_only_password(
        app, settings, world, carol, alices_desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    url = f"/api/sessions/{alices_desktop['id']}/shares"
    made = alice.post(url, json={"user": carol["name"], "mode": "view"}, headers={"X-CSRFToken": csrf})
    assert made.status_code == 201 and made.json["guest"] == carol["name"] and made.json["mode"] == "view"
    share_id = made.json["id"]

    guest, guest_csrf = client_of(app, carol["name"])
    assert [s["id"] for s in guest.get("/api/shared").json["shares"]] == [share_id]
    home = guest.get("/").get_data(as_text=True)
    assert 'id="shared-with-me"' in home and f"/shared/{share_id}" in home
    page = guest.get(f"/shared/{share_id}").get_data(as_text=True)
    assert 'data-guest-mode="view"' in page and 'id="btn-stop"' not in page and 'id="btn-share"' not in page
    connect = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf})
    assert connect.status_code == 200 and connect.json["mode"] == "view"
    assert connect.json["password"] == alices_desktop["view_password"] != alices_desktop["password"]
    assert vnc_tokens.resolve(settings, world["broker"], connect.json["token"]) == ("unix_socket", alices_desktop["socket"])
    # the guest never gets the owner's own page or token
    assert guest.get(f"/sessions/{alices_desktop['id']}/desktop").status_code == 404
    assert guest.post(f"/sessions/{alices_desktop['id']}/token", headers={"X-CSRFToken": guest_csrf}).status_code == 404
    # bob cannot use carol's share, even with a token naming it
    bob, bob_csrf = client_of(app, world["names"]["bob"])
    assert bob.get(f"/shared/{share_id}").status_code == 404
    assert bob.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": bob_csrf}).json["final"] is True
    forged = vnc_tokens.make_token(settings, world["ids"]["bob"], alices_desktop["id"], share_id)
    assert vnc_tokens.resolve(settings, world["broker"], forged) is None

    # control: the full password (a new one: every share change gives the desktop a new full password)
    alice.post(url, json={"user": carol["name"], "mode": "control"}, headers={"X-CSRFToken": csrf})
    control = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf})
    with session_scope(settings) as db:
        current = db.get(DesktopSession, alices_desktop["id"]).vnc_password
    assert control.json["mode"] == "control" and control.json["password"] == current != alices_desktop["password"]


def test_revoking_disconnects_the_guest_and_the_owner_saw_them_connected(
        app, settings, world, carol, alices_desktop):
    """The viewer proxy's rules for a guest: recorded as connected, admitted while the share lives, no longer
    once it is revoked (the proxy then closes the viewer within viewer_check_interval_s:
    tests/unit/web/test_viewer_proxy.py)."""
    alice, csrf = client_of(app, world["names"]["alice"])
    url = f"/api/sessions/{alices_desktop['id']}/shares"
    share_id = alice.post(url, json={"user": carol["name"]}, headers={"X-CSRFToken": csrf}).json["id"]
    guest, guest_csrf = client_of(app, carol["name"])
    token = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf}).json["token"]
    admission = vnc_tokens.admit(settings, world["broker"], token)
    assert admission is not None and admission.mode == "view"
    connection = vnc_tokens.record_opened(settings, admission.claim)
    listed = alice.get(url).json
    assert listed["viewers"][0]["user"] == carol["name"] and listed["shares"][0]["connected"] is True
    assert vnc_tokens.still_admitted(settings, [admission, admission]) == [True, True]  # a live share stays

    assert alice.delete(f"{url}/{share_id}", headers={"X-CSRFToken": csrf}).status_code == 200
    assert vnc_tokens.still_admitted(settings, [admission]) == [False]
    vnc_tokens.record_closed(settings, [connection])
    assert alice.get(url).json == {"shares": [], "members": [carol["name"]], "viewers": []}
    assert guest.get("/api/shared").json["shares"] == []
    assert guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf}).json["final"] is True

    # administrators see the share, the guest's connection and the revocation in the audit log
    root, _ = client_of(app, world["names"]["root"])
    audit = root.get("/admin/audit?action=share.").get_data(as_text=True)
    for action in ("share.create", "share.connect", "share.revoke"):
        assert f'data-action="{action}"' in audit
    assert carol["name"] in audit
    assert alice.get("/admin/audit").status_code in (302, 403, 404)  # not for users


def test_sharing_ends_with_the_session(app, settings, world, carol, alices_desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    url = f"/api/sessions/{alices_desktop['id']}/shares"
    share_id = alice.post(url, json={"user": carol["name"]}, headers={"X-CSRFToken": csrf}).json["id"]
    assert alice.delete(f"/api/sessions/{alices_desktop['id']}", headers={"X-CSRFToken": csrf}).status_code == 200
    guest, guest_csrf = client_of(app, carol["name"])
    assert guest.get("/api/shared").json["shares"] == []
    assert guest.get(f"/shared/{share_id}").status_code == 404
    token = vnc_tokens.make_token(settings, carol["id"], alices_desktop["id"], share_id)
    assert vnc_tokens.resolve(settings, world["broker"], token) is None
    refused = alice.post(url, json={"user": carol["name"]}, headers={"X-CSRFToken": csrf})
    assert refused.status_code == 409 and "stopped" in refused.json["error"]
    with session_scope(settings) as db:
        assert db.get(DesktopSession, alices_desktop["id"]).state == "stopped"


def test_a_change_of_mode_ends_the_guests_connection_to_come_back_with_the_new_password(
        app, settings, world, carol, alices_desktop):
    alice, csrf = client_of(app, world["names"]["alice"])
    url = f"/api/sessions/{alices_desktop['id']}/shares"
    share_id = alice.post(url, json={"user": carol["name"], "mode": "control"},
                          headers={"X-CSRFToken": csrf}).json["id"]
    claim = vnc_tokens.TokenClaim(carol["id"], alices_desktop["id"], share_id)
    admission = vnc_tokens.Admission(claim, alices_desktop["socket"], "control")
    assert vnc_tokens.still_admitted(settings, [admission]) == [True]  # the same mode: the connection stays
    alice.post(url, json={"user": carol["name"], "mode": "view"}, headers={"X-CSRFToken": csrf})
    assert vnc_tokens.still_admitted(settings, [admission]) == [False], \
        "a guest holding the full password would keep their connection after losing control"
    guest, guest_csrf = client_of(app, carol["name"])
    again = guest.post(f"/shared/{share_id}/token", headers={"X-CSRFToken": guest_csrf}).json
    assert again["mode"] == "view" and again["password"] == alices_desktop["view_password"]
