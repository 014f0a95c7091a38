"""A session's desktop through noVNC (which shows the launch's progress first), its state, and VNC
tokens for (re)connecting; a plain progress page for administrators watching someone's launch.

A launch opens the desktop page at once: while the broker starts the desktop, the page loads noVNC
and asks ``connect`` for a token; the answer is the session's state until it runs, then a token
and the VNC password, and the page connects in the same moment. No page navigation waits on the
desktop (click to drawn desktop within a fraction of a second of the broker's own time,
``bench/bench_click_to_desktop.py``).

Only the session's owner gets the desktop page, the VNC password and tokens; everyone else gets
404 (administrators may see progress and stop, not the desktop). A guest the owner shared the
desktop with (``broker.shares``) gets its own page under ``/shared/<share id>``: tokens bound to
the guest and the share, and the view-only VNC password unless the share gives control. What a session is comes from
the broker (``broker.session_dict``); the password only from the app's broker (``Broker.vnc_target``).
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


def _state(info: dict) -> dict:
    return {"id": info["id"], "state": info["state"], "message": info["message"],
            "ready": info["state"] == READY, "final": info["state"] in broker.FINAL_STATES}


@bp.get("/sessions/<int:session_id>")
@login_required
def open_session(session_id: int):
    """The desktop for its owner (it shows progress until the desktop runs); progress for an administrator."""
    info = _session(session_id, allow_admin=True)
    if info["owner"]:
        return redirect(url_for("viewer.desktop", session_id=session_id))
    return redirect(url_for("viewer.progress", session_id=session_id))


@bp.get("/sessions/<int:session_id>/progress")
@login_required
def progress(session_id: int):
    """Follows the launch (by polling the state); the owner is sent on to the desktop once it runs."""
    info = _session(session_id, allow_admin=True)
    return render_template("viewer/progress.html", s=info,
                           state_url=url_for("viewer.state", session_id=session_id),
                           desktop_url=url_for("viewer.desktop", session_id=session_id))


@bp.get("/sessions/<int:session_id>/state")
@login_required
def state(session_id: int):
    """The session's state as JSON for the progress page."""
    return jsonify(_state(_session(session_id, allow_admin=True)))


def _desktop_page(info: dict, connect_url: str, guest: dict | None = None):
    settings = current_settings()
    response = current_app.make_response(render_template(
        "viewer/desktop.html", s=info, initial=_state(info), guest=guest,
        ws_base=vnc_proxy.websocket_url(settings, request.host.split(":")[0], request.scheme),
        connect_url=connect_url, shares_url=f"/api/sessions/{info['id']}/shares",
        rfb_url=url_for("assets.vendor", package="novnc", filename="core/rfb.js"),
        keysym_url=url_for("assets.vendor", package="novnc", filename="core/input/keysymdef.js")))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/sessions/<int:session_id>/desktop")
@login_required
def desktop(session_id: int):
    """The noVNC viewer, at once: it shows the launch's progress and connects when the desktop runs."""
    return _desktop_page(_session(session_id), url_for("viewer.token", session_id=session_id))


@bp.get("/shared/<int:share_id>")
@login_required
def shared_desktop(share_id: int):
    """A desktop shared with this user, through their own login (404 when not, or no longer, shared)."""
    with session_scope(current_settings()) as db:
        try:
            row = broker.shares.guest_share(db, share_id, user_row(db))
        except broker.NotFound:
            abort(404)
        info, mode = broker.session_dict(row.session), row.mode
    info["owner"] = False
    return _desktop_page(info, url_for("viewer.shared_token", share_id=share_id),
                         guest={"share": share_id, "mode": mode, "owner": info["user"]})


@bp.post("/shared/<int:share_id>/token")
@login_required
def shared_token(share_id: int):
    """What a guest's viewer needs to connect: a token bound to the guest and the share, and the password
    of the share's mode; 409 with the state until the desktop runs, and once the share is over."""
    settings = current_settings()
    with session_scope(settings) as db:
        user = user_row(db)
        try:
            row = broker.shares.guest_share(db, share_id, user)
        except broker.NotFound:
            return jsonify(error="this desktop is no longer shared with you", id=None, state="ended",
                           message="The owner revoked the share, or the session ended.", ready=False,
                           final=True), 409
        info = _state(broker.session_dict(row.session))
        if not info["ready"]:
            return jsonify(error=f"session is {info['state']}", **info), 409
        try:
            target = broker.shares.guest_target(db, share_id, user)
        except broker.NotFound:
            return jsonify(error="session is not running", **info), 409
    response = jsonify(token=vnc_tokens.make_token(settings, g.user.id, target.session_id, share_id),
                       password=target.password, mode=target.mode, **info)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/sessions/<int:session_id>/token")
@login_required
def token(session_id: int):
    """What the viewer needs to connect (POST with the CSRF header): a fresh token and the VNC password
    once the session runs; until then (409) its state, which the viewer shows as progress."""
    info = _session(session_id)
    if info["state"] != READY:
        return jsonify(error=f"session is {info['state']}", **_state(info)), 409
    settings = current_settings()
    try:
        with session_scope(settings) as db:
            password = broker.current_broker().vnc_target(session_id, user_row(db)).password
    except broker.NotFound:  # ended between the two reads
        return jsonify(error="session is not running", **_state(_session(session_id))), 409
    response = jsonify(token=vnc_tokens.make_token(settings, g.user.id, session_id), password=password,
                       **_state(info))
    response.headers["Cache-Control"] = "no-store"
    return response
