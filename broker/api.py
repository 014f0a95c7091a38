"""The broker's JSON API (blueprint ``bp``), described by the OpenAPI document (``broker.openapi``).

Authentication (``asci.webauth.require_user``, before any body is read): the login session or
``Authorization: Bearer <api token>``. Errors follow ``asci.http``: JSON ``{"error", "kind"}``
with the error's status. Another user's session answers 404, exactly like one that does not exist.

- ``POST   /api/sessions``        ``{"environment", "version" ("current" default), "experiment",
  "gpu"?, "cpus"?, "memory"? (limits), "cpu_guarantee"?, "memory_guarantee"?}`` → 201 and the session
  (running); 422 when no node could ever hold it, 503 with ``Retry-After`` when none has room now
- ``GET    /api/sessions``        my sessions, newest first, ``?limit=`` (100) per page, ``?after=<next>``
  for the following page; administrators ``?all=1`` for everyone's
- ``GET    /api/sessions/<id>``   one session
- ``DELETE /api/sessions/<id>``   stop it → the session (state stopped)
- ``GET    /api/nodes``           nodes with capacity and usage (administrators)
- ``GET    /api/health``          database and node reachability (administrators)
- ``GET    /metrics``             Prometheus metrics
"""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import select

from asci import heartbeats
from asci.db import session_scope
from asci.http import CSRF_API, blueprint, current_settings
from asci.webauth import require_user
from broker import metrics, service
from broker.backends.base import NodeRef
from broker.errors import BadRequest, BrokerError, Forbidden
from broker.models import Node
from broker.views import get_session as visible_session
from broker.views import node_views, session_dict, session_page

bp = blueprint("broker_api", __name__, csrf=CSRF_API)

SESSION_FIELDS = {"environment", "version", "experiment", "gpu", "cpus", "memory", "cpu_guarantee",
                  "memory_guarantee"}
MAX_ID = 2**63 - 1


def _broker() -> service.Broker:
    return service.broker_for(current_settings())


def _number(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
        raise BadRequest(f"{name}: expected a number, got {raw[:40]!r}")
    return int(raw)


def _session_id(raw: str) -> int:
    return _number("session id", raw)


@bp.post("/api/sessions")
def create_session():
    with session_scope(current_settings()) as db:
        user = require_user(db)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object such as {\"environment\": ..., \"version\": \"current\", "
                             "\"experiment\": ...}")
        unknown = set(body) - SESSION_FIELDS
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        desktop = _broker().launch(db, user, body.get("environment"), body.get("version", "current"),
                                   body.get("experiment"), gpu=body.get("gpu", False), cpus=body.get("cpus"),
                                   memory=body.get("memory"), cpu_guarantee=body.get("cpu_guarantee"),
                                   memory_guarantee=body.get("memory_guarantee"))
        return jsonify(session_dict(desktop)), 201


@bp.get("/api/sessions")
def list_sessions():
    with session_scope(current_settings()) as db:
        user = require_user(db)
        everyone = request.args.get("all", "") in {"1", "true", "yes"}
        if everyone and not user.is_admin:
            raise Forbidden("only administrators may list everyone's sessions")
        limit = _number("limit", request.args.get("limit", "100"))
        after = _number("after", request.args["after"]) if "after" in request.args else None
        page = session_page(db, user, everyone=everyone, limit=limit, after=after)
        return jsonify(sessions=page.sessions, next=str(page.next) if page.next is not None else None)


@bp.get("/api/sessions/<session_id>")
def get_session(session_id: str):
    with session_scope(current_settings()) as db:
        user = require_user(db)
        return jsonify(session_dict(visible_session(db, _session_id(session_id), user)))


@bp.delete("/api/sessions/<session_id>")
def stop_session(session_id: str):
    with session_scope(current_settings()) as db:
        user = require_user(db)
        return jsonify(session_dict(_broker().stop(db, _session_id(session_id), user)))


@bp.get("/api/nodes")
def list_nodes():
    with session_scope(current_settings()) as db:
        require_user(db, admin=True)
        return jsonify(nodes=node_views(db))


@bp.get("/api/health")
def health():
    broker = _broker()
    with session_scope(current_settings()) as db:
        require_user(db, admin=True)
        nodes = {}
        for node in db.scalars(select(Node).order_by(Node.name)):
            try:
                broker.backend.ping(NodeRef.of(node))
                nodes[node.name] = {"ok": True}
            except BrokerError as exc:
                nodes[node.name] = {"ok": False, "error": str(exc)}
        parts = [status.as_dict() for status in heartbeats.recent(db)]
    healthy = any(check["ok"] for check in nodes.values())
    return jsonify(status="ok" if healthy else "failing", database={"ok": True}, nodes=nodes, parts=parts), (
        200 if healthy else 503)


@bp.get("/metrics")
def prometheus():
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics.render(current_settings()), mimetype=CONTENT_TYPE_LATEST)
