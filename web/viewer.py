"""A session's progress page, its desktop through noVNC, and fresh VNC tokens for (re)connecting.

Only the session's owner gets the desktop page, the VNC password and tokens; everyone else gets
404 (administrators may see progress and stop, not the desktop). What a session is comes from
the broker (``broker.session_dict``); the password only from ``broker.vnc_target``.
"""

from __future__ import annotations

from flask import abort, current_app, g, jsonify, redirect, render_template, request, url_for

import broker
from asci.db import session_scope
from asci.http import blueprint, current_settings
from web import vnc_proxy, vnc_tokens
from web.security import login_required, user_row

bp = blueprint("viewer", __name__)

READY = broker.SessionState.RUNNING


def _session(session_id: int, allow_admin: bool = False) -> dict:
    """The session as the broker shows it, when the user owns it (administrators too, if allowed)."""
    with session_scope(current_settings()) as db:
        try:
            desktop = broker.get_session(db, session_id, user_row(db))
        except broker.NotFound:
            abort(404)
        info = broker.session_dict(desktop)
    if info["user"] != g.user.username and not allow_admin:
        abort(404)
    info["owner"] = info["user"] == g.user.username
    return info


@bp.get("/sessions/<int:session_id>")
@login_required
def open_session(session_id: int):
    """The desktop when it is running, its progress otherwise."""
    info = _session(session_id, allow_admin=True)
    if info["state"] == READY and info["owner"]:
        return redirect(url_for("viewer.desktop", session_id=session_id))
    return redirect(url_for("viewer.progress", session_id=session_id))


@bp.get("/sessions/<int:session_id>/progress")
@login_required
def progress(session_id: int):
    """Waits (by polling the state) until the desktop is ready, then opens it."""
    info = _session(session_id, allow_admin=True)
    return render_template("viewer/progress.html", s=info,
                           state_url=url_for("viewer.state", session_id=session_id),
                           desktop_url=url_for("viewer.desktop", session_id=session_id))


@bp.get("/sessions/<int:session_id>/state")
@login_required
def state(session_id: int):
    """The session's state as JSON for the progress page."""
    info = _session(session_id, allow_admin=True)
    return jsonify(id=info["id"], state=info["state"], message=info["message"],
                   ready=info["state"] == READY,
                   final=info["state"] in broker.FINAL_STATES)


@bp.get("/sessions/<int:session_id>/desktop")
@login_required
def desktop(session_id: int):
    """The noVNC viewer; the page embeds this session's VNC password and a short-lived token."""
    info = _session(session_id)
    settings = current_settings()
    try:
        with session_scope(settings) as db:
            password = broker.vnc_target(settings, session_id, user_row(db)).password
    except broker.NotFound:  # not running (yet, or any more)
        return redirect(url_for("viewer.progress", session_id=session_id))
    response = current_app.make_response(render_template(
        "viewer/desktop.html", s=info, vnc_password=password,
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
    info = _session(session_id)
    if info["state"] != READY:
        return jsonify(error=f"session is {info['state']}", state=info["state"]), 409
    response = jsonify(token=vnc_tokens.make_token(current_settings(), g.user.id, session_id))
    response.headers["Cache-Control"] = "no-store"
    return response
