"""A session's progress page, its desktop through noVNC, and fresh VNC tokens for (re)connecting.

Only the session's owner gets the desktop page, the VNC password and tokens;
everyone else gets 404 (administrators may see progress and stop, not the desktop).
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for

from asci import db
from web import broker_link, vnc_proxy, vnc_tokens
from web.security import login_required

bp = Blueprint("viewer", __name__)

READY_STATES = ("running",)
FINAL_STATES = ("stopped", "failed", "lost")


def _settings():
    from web import settings_of

    return settings_of(current_app)


def _own_session(session_id: int, allow_admin: bool = False) -> dict:
    with db.session_scope(_settings()) as dbs:
        row = broker_link.session_row(dbs, session_id)
        if row is None or (row.user_id != g.user.id and not (allow_admin and g.user.is_admin)):
            abort(404)
        version = row.environment_version
        return {"id": row.id, "state": row.state, "message": row.message, "user_id": row.user_id,
                "environment": version.environment.name if version else "?",
                "version": version.version if version else "?",
                "experiment": row.experiment.code if row.experiment else "",
                "vnc_password": row.vnc_password, "has_port": bool(row.vnc_port)}


@bp.get("/sessions/<int:session_id>")
@login_required
def open_session(session_id: int):
    """The desktop when it is running, its progress otherwise."""
    info = _own_session(session_id, allow_admin=True)
    if info["state"] in READY_STATES and info["user_id"] == g.user.id:
        return redirect(url_for("viewer.desktop", session_id=session_id))
    return redirect(url_for("viewer.progress", session_id=session_id))


@bp.get("/sessions/<int:session_id>/progress")
@login_required
def progress(session_id: int):
    """Waits (by polling the state) until the desktop is ready, then opens it."""
    info = _own_session(session_id, allow_admin=True)
    return render_template("viewer/progress.html", s=info,
                           state_url=url_for("viewer.state", session_id=session_id),
                           desktop_url=url_for("viewer.desktop", session_id=session_id))


@bp.get("/sessions/<int:session_id>/state")
@login_required
def state(session_id: int):
    """The session's state as JSON for the progress page."""
    info = _own_session(session_id, allow_admin=True)
    return jsonify(id=info["id"], state=info["state"], message=info["message"],
                   ready=info["state"] in READY_STATES and info["has_port"], final=info["state"] in FINAL_STATES)


@bp.get("/sessions/<int:session_id>/desktop")
@login_required
def desktop(session_id: int):
    """The noVNC viewer; the page embeds this session's VNC password and a short-lived token."""
    info = _own_session(session_id)
    if info["state"] not in READY_STATES:
        return redirect(url_for("viewer.progress", session_id=session_id))
    settings = _settings()
    response = current_app.make_response(render_template(
        "viewer/desktop.html", s=info,
        ws_base=vnc_proxy.websocket_url(settings, request.host.split(":")[0], request.scheme),
        token=vnc_tokens.make_token(settings, g.user.id, session_id),
        token_url=url_for("viewer.token", session_id=session_id),
        state_url=url_for("viewer.state", session_id=session_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/sessions/<int:session_id>/token")
@login_required
def token(session_id: int):
    """A fresh VNC token for reconnecting (POST with the CSRF header)."""
    info = _own_session(session_id)
    if info["state"] not in READY_STATES:
        return jsonify(error=f"session is {info['state']}", state=info["state"]), 409
    response = jsonify(token=vnc_tokens.make_token(_settings(), g.user.id, session_id))
    response.headers["Cache-Control"] = "no-store"
    return response
