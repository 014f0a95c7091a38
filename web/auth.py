"""Local login (user name + password), logout.

A wrong password, an unknown name, a disabled account and an account without a password get the
same answer after the same work (one password hash checked: ``asci.accounts.authenticate``).
Failures are throttled per client address (``web.ratelimit``). Logging out ends every login cookie
of the account (its session epoch moves on), not only this browser's.
"""

from __future__ import annotations

from flask import current_app, flash, g, redirect, render_template, request, session, url_for

from asci import accounts
from asci.db import session_scope
from asci.http import blueprint, client_address, current_settings
from asci.webauth import cookie_user
from web.ratelimit import limiter_for
from web.security import log_in, safe_next

bp = blueprint("auth", __name__)

WRONG = "Wrong user name or password."
MAX_FIELD = 1024


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a wrong password says so politely, repeated failures wait a while."""
    if g.get("user") is not None and request.method == "GET":
        return redirect(safe_next(request.args.get("next")))
    next_url = request.values.get("next", "")
    next_field = next_url if next_url == safe_next(next_url) else ""
    if request.method == "GET":
        return render_template("auth/login.html", next=next_field, username="")
    username = request.form.get("username", "").strip()[:MAX_FIELD]
    password = request.form.get("password", "")[:MAX_FIELD]
    shown = username if username.isprintable() else ""
    address = client_address()
    limiter = limiter_for(current_app)
    wait = limiter.retry_after(username, address)
    if wait:
        flash(f"Too many failed attempts. Please wait {wait} seconds and try again.", "warning")
        return (render_template("auth/login.html", next=next_field, username=shown), 429,
                {"Retry-After": str(wait)})
    with session_scope(current_settings()) as db:
        user = accounts.authenticate(db, username, password)
        if user is not None:
            log_in(user)
    if user is None:
        limiter.failed(username, address)
        flash(WRONG, "danger")
        return render_template("auth/login.html", next=next_field, username=shown), 401
    limiter.succeeded(username, address)
    return redirect(safe_next(next_url))


@bp.post("/logout")
def logout():
    """End the login session everywhere (a form POST, so it carries the CSRF token)."""
    with session_scope(current_settings()) as db:
        user = cookie_user(db)
        if user is not None:
            accounts.end_web_sessions(db, user)
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
