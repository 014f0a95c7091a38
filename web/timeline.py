"""The experiment's page: its timeline as a picture (SVG drawn here, server side) and as JSON.

GET /experiments/<code>                 the picture, a day picker and a one-click relaunch of that day's version
GET /api/experiments/<code>/timeline    the same facts as JSON (members of the experiment, administrators)
"""

from __future__ import annotations

import datetime as dt

from flask import jsonify, render_template, request, url_for
from markupsafe import Markup, escape

import broker
from asci.accounts import SCOPE_SESSIONS
from asci.db import session_scope
from asci.http import blueprint, current_settings, known_args
from asci.webauth import require_user
from web.security import login_required, user_row

bp = blueprint("timeline", __name__)
WIDTH, LEFT, ROW, BAND_H = 960, 170, 64, 22
COLOURS = ("#0d6efd", "#198754", "#6f42c1", "#fd7e14", "#20c997", "#d63384", "#6c757d", "#0dcaf0")


@bp.get("/api/experiments/<code>/timeline")
def timeline_api(code: str):
    with session_scope(current_settings()) as db:
        user = require_user(db, SCOPE_SESSIONS)
        known_args()
        return jsonify(broker.experiment_timeline(db, user, code).as_dict())


def _x(when: dt.datetime, low: dt.datetime, high: dt.datetime) -> float:
    return LEFT + (WIDTH - LEFT - 10) * (when - low).total_seconds() / max((high - low).total_seconds(), 1)


def timeline_svg(timeline: broker.Timeline, link) -> Markup:
    """The picture: one row per environment, a band per version used, a mark per session;
    ``link(environment, day)`` is where clicking a band goes (that day's relaunch)."""
    low, high = timeline.span
    height = 40 + ROW * max(len(timeline.environments), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="100%" viewBox="0 0 {WIDTH} {height}" '
             f'role="img" aria-label="Environment versions used by {escape(timeline.experiment)}">']
    days = (high.date() - low.date()).days + 1
    step = max(1, days // 8)
    for n in range(0, days, step):
        day = low.date() + dt.timedelta(days=n)
        x = _x(max(dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc), low), low, high)
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height}" stroke="#dee2e6"/>'
                     f'<text x="{x + 2:.1f}" y="14" font-size="11" fill="#6c757d">{day.isoformat()}</text>')
    if not timeline.environments:
        parts.append(f'<text x="{LEFT}" y="60" font-size="13" fill="#6c757d">No sessions yet.</text>')
    for row, environment in enumerate(timeline.environments):
        top = 30 + row * ROW
        parts.append(f'<g class="environment" data-environment="{escape(environment.environment)}">'
                     f'<text x="4" y="{top + 16}" font-size="13" font-weight="bold">{escape(environment.environment)}</text>')
        for index, band in enumerate(environment.bands):
            x1, x2 = _x(band.first, low, high), _x(band.last, low, high)
            colour = COLOURS[index % len(COLOURS)]
            href = escape(link(environment.environment, band.first.date()))
            parts.append(f'<a href="{href}" class="band-link"><rect class="band" data-version="{escape(band.version)}" '
                         f'x="{x1:.1f}" y="{top}" width="{max(x2 - x1, 4):.1f}" height="{BAND_H}" rx="3" '
                         f'fill="{colour}" fill-opacity="0.35" stroke="{colour}">'
                         f'<title>{escape(band.version)}: {band.sessions} sessions by {escape(", ".join(sorted(band.users)))}, '
                         f'{band.first:%Y-%m-%d %H:%M} to {band.last:%Y-%m-%d %H:%M}</title></rect>'
                         f'<text x="{x1 + 3:.1f}" y="{top + 15}" font-size="11">{escape(band.version)}</text></a>')
        for mark in environment.marks:
            x = _x(mark.started, low, high)
            minutes = mark.duration_s(timeline.now) // 60
            parts.append(f'<circle class="session" data-session="{mark.id}" data-version="{escape(mark.version)}" '
                         f'cx="{x:.1f}" cy="{top + BAND_H + 9}" r="4" fill="#212529">'
                         f'<title>{escape(mark.user)}: {escape(mark.version)} from {mark.started:%Y-%m-%d %H:%M}, '
                         f'{minutes} min</title></circle>')
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


@bp.get("/experiments/<code>")
@login_required
def experiment_page(code: str):
    """The experiment's timeline; ``?env=&on=YYYY-MM-DD`` picks the version used that day to relaunch."""
    day, picked = _day(request.args.get("on")), request.args.get("env", "")
    with session_scope(current_settings()) as db:
        timeline = broker.experiment_timeline(db, user_row(db), code)
    choices = []
    for environment in timeline.environments:
        version = environment.version_on(day) if day else None
        choices.append({"environment": environment.environment, "version": version,
                        "picked": environment.environment == picked})
    svg = timeline_svg(timeline, lambda env, on: url_for("timeline.experiment_page", code=code, env=env,
                                                           on=on.isoformat()) + "#relaunch")
    return render_template("timeline/experiment.html", timeline=timeline, svg=svg, day=day,
                           bad_day=bool(request.args.get("on")) and day is None, choices=choices,
                           rows=timeline.as_dict()["environments"])
