"""The broker's JSON API (blueprint ``bp``), described by ``/api/openapi.json``.

Authentication: the Flask login session (``session["user_id"]``, set by web/
at login) or ``Authorization: Bearer <api token>``. Errors are
``{"error": "..."}`` with a 4xx/5xx status. Another user's session answers
404, exactly like a session that does not exist.

- ``POST   /api/sessions``        ``{"environment", "version" ("current" default), "experiment",
  "gpu"?, "cpus"?, "memory"?}`` → 201 and the session (running)
- ``GET    /api/sessions``        my sessions; administrators ``?all=1`` for everyone's
- ``GET    /api/sessions/<id>``   one session
- ``DELETE /api/sessions/<id>``   stop it → the session (state stopped)
- ``GET    /api/nodes``           nodes with capacity and usage (administrators)
- ``GET    /api/health``          database and node reachability (administrators)
- ``GET    /api/openapi.json``    this API as OpenAPI 3
- ``GET    /metrics``             Prometheus metrics
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from asci import db as asci_db
from asci.accounts import User
from asci.webauth import bearer_token, request_user
from broker import metrics, placement, service
from broker.backends.base import NodeRef
from broker.errors import BadRequest, BrokerError, Forbidden
from broker.models import Node

bp = Blueprint("broker_api", __name__)


class Unauthorized(BrokerError):
    http_status = 401


def _settings():
    from web import settings_of

    return settings_of(current_app)


def _broker() -> service.Broker:
    return current_app.extensions.get("asci_broker") or service.broker_for(_settings())


def _user(db) -> User:
    user = request_user(db)
    if user is None:
        raise Unauthorized("invalid API token" if bearer_token() else
                           "log in or send an API token (Authorization: Bearer ...)")
    return user


def _admin(db) -> User:
    user = _user(db)
    if not user.is_admin:
        raise Forbidden("administrators only")
    return user


@bp.errorhandler(BrokerError)
def _error(exc: BrokerError):
    return jsonify(error=str(exc)), exc.http_status


@bp.post("/api/sessions")
def create_session():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object such as {\"environment\": ..., \"version\": \"current\", "
                         "\"experiment\": ...}")
    unknown = set(body) - {"environment", "version", "experiment", "gpu", "cpus", "memory"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    with asci_db.session_scope(_settings()) as db:
        user = _user(db)
        session = _broker().launch(db, user, body.get("environment"), body.get("version", "current"),
                                   body.get("experiment"), gpu=body.get("gpu", False), cpus=body.get("cpus"),
                                   memory=body.get("memory"))
        return jsonify(service.session_dict(session)), 201


@bp.get("/api/sessions")
def list_sessions():
    everyone = request.args.get("all", "") in {"1", "true", "yes"}
    with asci_db.session_scope(_settings()) as db:
        user = _user(db)
        if everyone and not user.is_admin:
            raise Forbidden("only administrators may list everyone's sessions")
        rows = service.list_sessions(db, user, everyone=everyone)
        return jsonify(sessions=[service.session_dict(row) for row in rows])


def _session_id(raw: str) -> int:
    if not raw.isdigit():
        raise BadRequest(f"session id: expected a number, got {raw!r}")
    return int(raw)


@bp.get("/api/sessions/<raw_id>")
def get_session(raw_id: str):
    with asci_db.session_scope(_settings()) as db:
        return jsonify(service.session_dict(service.get_session(db, _session_id(raw_id), _user(db))))


@bp.delete("/api/sessions/<raw_id>")
def stop_session(raw_id: str):
    with asci_db.session_scope(_settings()) as db:
        session = _broker().stop(db, _session_id(raw_id), _user(db))
        return jsonify(service.session_dict(session))


def node_dict(db, node: Node) -> dict:
    used = placement.usage(db, node)
    return {"name": node.name, "docker_url": node.docker_url, "state": node.state, "cpus": node.cpus,
            "memory_bytes": node.memory_bytes, "max_sessions": node.max_sessions,
            "ports": [node.port_min, node.port_max], "gpus": node.gpus,
            "used": {"sessions": used.sessions, "cpus": used.cpus, "memory_bytes": used.memory_bytes},
            "last_seen": node.last_seen.isoformat() if node.last_seen else None, "last_error": node.last_error}


@bp.get("/api/nodes")
def list_nodes():
    from sqlalchemy import select

    with asci_db.session_scope(_settings()) as db:
        _admin(db)
        return jsonify(nodes=[node_dict(db, node) for node in db.scalars(select(Node).order_by(Node.name))])


@bp.get("/api/health")
def health():
    from sqlalchemy import select

    broker = _broker()
    with asci_db.session_scope(_settings()) as db:
        _admin(db)
        nodes = {}
        for node in db.scalars(select(Node).order_by(Node.name)):
            try:
                broker.backend.ping(NodeRef.of(node))
                nodes[node.name] = {"ok": True}
            except BrokerError as exc:
                nodes[node.name] = {"ok": False, "error": str(exc)}
    healthy = any(check["ok"] for check in nodes.values())
    return jsonify(status="ok" if healthy else "failing", database={"ok": True}, nodes=nodes), (
        200 if healthy else 503)


@bp.get("/api/openapi.json")
def openapi():
    from broker.openapi import document

    return jsonify(document(_settings().public_url))


@bp.get("/metrics")
def prometheus():
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics.render(_settings()), mimetype=CONTENT_TYPE_LATEST)
