"""The broker's JSON API (blueprint ``bp``), described by the OpenAPI document (``broker.openapi``).

Authentication (``asci.webauth.require_user``, before any body is read): the login session or
``Authorization: Bearer <api token>`` with the ``sessions`` scope (the administrators' routes need
an administrator, and a token with the ``admin`` scope). Errors follow ``asci.http``: JSON
``{"error", "kind"}`` with the error's status. Another user's session answers 404, exactly like one
that does not exist.

- ``POST   /api/sessions``        ``{"environment", "version" ("current" default), "experiment",
  "gpu"?, "cpus"?, "memory"?, "cpu_guarantee"?, "memory_guarantee"?}`` → 201 and the session (running)
- ``GET    /api/sessions``        my sessions, a page at a time (``?limit=&after=``, a ``next`` cursor);
  administrators ``?all=1`` for everyone's
- ``GET    /api/sessions/<id>``   one session
- ``DELETE /api/sessions/<id>``   stop it → the session (state stopped)
- ``GET    /api/sessions/<id>/shares``   the owner's shares of a session, who may be invited, who is connected
- ``POST   /api/sessions/<id>/shares``   ``{"user", "mode": "view"|"control"}`` share it with a member of its
  experiment → 201 and the share
- ``DELETE /api/sessions/<id>/shares/<share id>``   revoke (the guest is disconnected within seconds)
- ``GET    /api/shared``          desktops other users share with me
- ``GET    /api/nodes``           nodes with capacity and usage (administrators)
- ``GET    /api/health``          database and node reachability, the parts' heartbeats (administrators)
"""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy import select

from asci import heartbeats
from asci.accounts import SCOPE_SESSIONS
from asci.db import session_scope
from asci.http import CSRF_API, blueprint, current_settings, flag_arg, json_object, known_args
from asci.webauth import require_caller, require_user
from broker import service, shares
from broker.handle import current_broker
from broker.launch import LaunchRequest
from broker.access import member_experiment
from broker.backends.base import NodeRef
from broker.errors import BadRequest, BrokerError, Forbidden, NotFound
from broker.models import Node
from broker.resources import check_api_resources
from broker.views import get_session as visible_session
from broker.views import node_views, session_dict, session_page

bp = blueprint("broker_api", __name__, csrf=CSRF_API)

SHARE_FIELDS = {"user", "mode"}
SESSION_FIELDS = {"environment", "version", "experiment", "gpu", "cpus", "memory", "cpu_guarantee",
                  "memory_guarantee"}
MAX_ID = 2**63 - 1


def _broker() -> service.Broker:
    return current_broker()


def _number(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
        raise BadRequest(f"{name}: expected a number, got {raw[:40]!r}")
    return int(raw)


def _session_id(raw: str) -> int:
    return _number("session id", raw)


def _visible(db, caller, session_id: int):
    """The session when the caller may see it: their own, or anyone's for an administrator acting as
    one (an administrator's token without the ``admin`` scope sees only its owner's sessions)."""
    desktop = visible_session(db, session_id, caller.user)
    if desktop.user_id != caller.user.id and not caller.is_admin:
        raise NotFound(f"no session {session_id}")
    return desktop


@bp.post("/api/sessions")
def create_session():
    with session_scope(current_settings()) as db:
        caller = require_caller(db, SCOPE_SESSIONS)
        user = caller.user
        known_args()
        body = json_object('{"environment": ..., "version": "current", "experiment": ...}')
        unknown = set(body) - SESSION_FIELDS
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        empty = sorted(key for key, value in body.items() if value is None)
        if empty:
            raise BadRequest(f"{', '.join(empty)}: null is not a value; leave the field out for the default")
        check_api_resources(current_settings(), body.get("cpus"), body.get("memory"), body.get("cpu_guarantee"),
                            body.get("memory_guarantee"))
        if user.is_admin and not caller.is_admin:  # an administrator's token without the admin scope: a member's rights
            member_experiment(db, user, body.get("experiment"), acting_as_admin=False)
        desktop = _broker().launch(db, user, LaunchRequest(
            body.get("environment"), body.get("version", "current"), body.get("experiment"),
            gpu=body.get("gpu", False), cpus=body.get("cpus"), memory=body.get("memory"),
            cpu_guarantee=body.get("cpu_guarantee"), memory_guarantee=body.get("memory_guarantee")))
        return jsonify(session_dict(desktop)), 201


@bp.get("/api/sessions")
def list_sessions():
    with session_scope(current_settings()) as db:
        caller = require_caller(db, SCOPE_SESSIONS)
        user = caller.user
        known_args("all", "limit", "after")
        everyone = flag_arg("all")
        if everyone and not caller.is_admin:
            raise Forbidden("only administrators (a token needs the 'admin' scope) may list everyone's sessions")
        limit = _number("limit", request.args.get("limit", "100"))
        if not 1 <= limit <= 1000:
            raise BadRequest(f"limit: expected 1 to 1000, got {limit}")
        after = _number("after", request.args["after"]) if "after" in request.args else None
        page = session_page(db, user, everyone=everyone, limit=limit, after=after)
        return jsonify(sessions=page.sessions, next=str(page.next) if page.next is not None else None)


@bp.get("/api/sessions/<session_id>")
def get_session(session_id: str):
    with session_scope(current_settings()) as db:
        caller = require_caller(db, SCOPE_SESSIONS)
        known_args()
        return jsonify(session_dict(_visible(db, caller, _session_id(session_id))))


@bp.delete("/api/sessions/<session_id>")
def stop_session(session_id: str):
    with session_scope(current_settings()) as db:
        caller = require_caller(db, SCOPE_SESSIONS)
        known_args()
        desktop = _visible(db, caller, _session_id(session_id))
        return jsonify(session_dict(_broker().stop(db, desktop.id, caller.user)))


@bp.get("/api/sessions/<session_id>/shares")
def list_shares(session_id: str):
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args()
        number = _session_id(session_id)
        return jsonify(shares=[view.as_dict() for view in shares.shares_of(db, number, user)],
                       members=shares.members_to_invite(db, number, user), viewers=shares.viewers(db, number, user))


@bp.post("/api/sessions/<session_id>/shares")
def create_share(session_id: str):
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args()
        number = _session_id(session_id)
        body = json_object('{"user": "a colleague", "mode": "view"}')
        unknown = set(body) - SHARE_FIELDS
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        guest, mode = body.get("user"), body.get("mode", "view")
        if not isinstance(guest, str) or not guest or not isinstance(mode, str):
            raise BadRequest("user (a user name) is required; mode is view or control")
        row = shares.share(db, number, user, guest, mode)
        db.commit()
        view = next(v for v in shares.shares_of(db, number, user) if v.id == row.id)
        return jsonify(view.as_dict()), 201


@bp.delete("/api/sessions/<session_id>/shares/<share_id>")
def revoke_share(session_id: str, share_id: str):
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args()
        row = shares.revoke(db, _session_id(session_id), _number("share id", share_id), user)
        db.commit()
        return jsonify(id=row.id, guest=row.guest.username, mode=row.mode, revoked_at=row.revoked_at.isoformat())


@bp.get("/api/shared")
def shared_with_me():
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args()
        return jsonify(shares=[view.as_dict() for view in shares.shared_with(db, user)])


@bp.get("/api/nodes")
def list_nodes():
    with session_scope(current_settings()) as db:
        require_user(db, admin=True)
        known_args()
        return jsonify(nodes=node_views(db))


@bp.get("/api/health")
def health():
    broker = _broker()
    with session_scope(current_settings()) as db:
        require_user(db, admin=True)
        known_args()
        nodes = {}
        for node in db.scalars(select(Node).order_by(Node.name)):
            try:
                broker.backend.ping(NodeRef.of(node))
                nodes[node.name] = {"ok": True}
            except BrokerError as exc:
                nodes[node.name] = {"ok": False, "error": str(exc)}
        parts = [status.as_dict() for status in heartbeats.recent(db)]
    healthy = any(check["ok"] for check in nodes.values())
    reply = jsonify(status="ok" if healthy else "failing", database={"ok": True}, nodes=nodes, parts=parts)
    if healthy:
        return reply, 200
    return reply, 503, {"Retry-After": "30"}
