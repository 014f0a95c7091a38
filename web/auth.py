"""Local login (user name + password), logout."""

from __future__ import annotations

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select

from asci import accounts
from asci.db import session_scope
from asci.http import blueprint, current_settings
from web.ratelimit import limiter_for
from web.security import log_in, safe_next

bp = blueprint("auth", __name__)

WRONG = "Wrong user name or password."


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a wrong password says so politely, repeated failures are refused for a while."""
    if g.get("user") is not None and request.method == "GET":
        return redirect(safe_next(request.args.get("next")))
    next_url = request.values.get("next", "")
    if request.method == "GET":
        return render_template("auth/login.html", next=next_url, username="")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    address = request.remote_addr or "-"
    limiter = limiter_for(current_app)
    wait = limiter.retry_after(username, address)
    if wait:
        flash(f"Too many failed attempts. Please wait {wait} seconds and try again.", "warning")
        return render_template("auth/login.html", next=next_url, username=username), 429, {"Retry-After": str(wait)}
    with session_scope(current_settings()) as db:
        user = db.scalar(select(accounts.User).where(accounts.User.username == username)) if username else None
        ok = user is not None and user.is_active and user.check_password(password)
        if ok:
            log_in(user)
    if not ok:
        limiter.failed(username, address)
        flash(WRONG, "danger")
        return render_template("auth/login.html", next=next_url, username=username), 401
    limiter.succeeded(username, address)
    return redirect(safe_next(next_url))


@bp.post("/logout")
def logout():
    """End the login session (a form POST, so it carries the CSRF token)."""
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
