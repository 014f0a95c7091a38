"""Pictures for operators: the administration page's charts and the live thumbnails of running desktops.

* ``GET /admin/operations.json`` (administrators): node usage over time (guarantees against schedulable
  CPUs and memory, from ``broker.usage_history``), launch latency percentiles and failures per hour, the
  build timeline (``ci.build_timeline``) and the running desktops; drawn by ``static/js/operations.js``
  with Chart.js.
* ``GET /sessions/<id>/thumbnail.png`` (the session's owner and administrators): a small PNG of the
  desktop's screen (``broker.thumbnail``), refreshed by the pages every few seconds.
"""

from __future__ import annotations

import datetime as dt

from flask import Response, abort, jsonify, request

import broker
import ci
from asci.db import session_scope, utcnow
from asci.http import blueprint, current_settings
from web.security import admin_required, login_required, user_row

bp = blueprint("pictures", __name__)
MAX_NODE_HOURS = 24 * 31


def _hours(name: str, default: int, most: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        abort(400, description=f"{name}: expected a whole number of hours from 1 to {most}")
    return int(raw)


@bp.get("/admin/operations.json")
@admin_required
def operations():
    """Everything the administration page draws, in one JSON document."""
    node_hours = _hours("node_hours", 24, MAX_NODE_HOURS)
    launch_hours = _hours("launch_hours", 48, broker.usage_history.MAX_HOURS)
    now = utcnow()
    with session_scope(current_settings()) as db:
        nodes = broker.usage_history.node_history(db, now - dt.timedelta(hours=node_hours))
        launches = broker.usage_history.launch_hours(db, launch_hours, now)
        builds = ci.build_timeline(db, now - dt.timedelta(days=7))
        running = [{"id": s["id"], "user": s["user"], "environment": s["environment"], "version": s["version"],
                    "node": s["node"]}
                   for s in broker.session_page(db, user_row(db), everyone=True, include_ended=False, limit=200).sessions
                   if s["state"] == "running"]
    return jsonify(now=now.timestamp(), nodes=nodes, launches=launches, builds=builds, running=running)


@bp.get("/sessions/<int:session_id>/thumbnail.png")
@login_required
def thumbnail(session_id: int):
    """The desktop's screen, small; 404 unless it runs and is the caller's (or the caller administers)."""
    settings = current_settings()
    with session_scope(settings) as db:
        user = user_row(db)
        db.expunge(user)
    try:
        png = broker.thumbnail(settings, broker.current_broker(), session_id, user)
    except broker.NotFound:
        abort(404)
    except broker.BackendError as exc:
        abort(502, description=str(exc))
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, no-store"})
