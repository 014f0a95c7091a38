"""Administration: nodes, all sessions, builds and their logs, repository packages, experiments, audit log.

Every view shows what the domain packages compute (``broker.node_views``, ``broker.session_dict``,
``ci.list_jobs``, ``builder.recent_versions``, ``rpmrepo.list_packages``).
"""

from __future__ import annotations

from flask import abort, render_template, request

import broker
import builder
import ci
import rpmrepo
from asci import audit, heartbeats
from asci.db import session_scope
from asci.http import blueprint, current_settings
from web.pages import PAGE_SIZE, after_cursor
from web.security import admin_required, user_row

bp = blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@admin_required
def index():
    """The platform's parts with their last heartbeats, and the administration pages."""
    with session_scope(current_settings()) as db:
        parts = heartbeats.recent(db)
    return render_template("admin/index.html", parts=parts)


@bp.get("/nodes")
@admin_required
def nodes():
    with session_scope(current_settings()) as db:
        rows = broker.node_views(db)
    return render_template("admin/nodes.html", nodes=rows)


@bp.get("/sessions")
@admin_required
def sessions():
    with session_scope(current_settings()) as db:
        page = broker.session_page(db, user_row(db), everyone=True, limit=PAGE_SIZE, after=after_cursor())
        rows = page.sessions
    return render_template("pages/sessions.html", sessions=rows, everyone=True, next_after=page.next,
                           first_page=after_cursor() is None)


@bp.get("/builds")
@admin_required
def builds():
    with session_scope(current_settings()) as db:
        versions = builder.recent_versions(db, limit=300)
        jobs = [job.as_dict() for job in ci.list_jobs(db, limit=200)]
    return render_template("admin/builds.html", versions=versions, jobs=jobs)


@bp.get("/builds/jobs/<int:job_id>")
@admin_required
def build_job(job_id: int):
    """One build job; its log follows the build while it runs."""
    with session_scope(current_settings()) as db:
        try:
            job = ci.get_job(db, job_id)
        except ci.JobNotFound:
            abort(404)
        info = job.as_dict() | {"log": job.log}
    return render_template("admin/build_job.html", job=info)


@bp.get("/builds/<int:version_id>/log")
@admin_required
def build_log(version_id: int):
    with session_scope(current_settings()) as db:
        try:
            info = builder.version_record(db, version_id)
        except builder.UnknownVersion:
            abort(404)
    return render_template("admin/build_log.html", v=info)


@bp.get("/packages")
@admin_required
def packages():
    settings = current_settings()
    repo = request.args.get("repo") or settings.default_repo
    error, rows = "", []
    with session_scope(settings) as db:
        try:
            rows = [p.as_dict() for p in rpmrepo.list_packages(db, repo, include_retracted=True)]
        except rpmrepo.RepoError as exc:
            error = str(exc)
    repos = rpmrepo.list_repos(settings) or [settings.default_repo]
    return render_template("admin/packages.html", repo=repo, repos=repos, packages=rows, error=error)


@bp.get("/experiments")
@admin_required
def experiments():
    with session_scope(current_settings()) as db:
        names = {env.id: env.name for env in builder.environment_summaries(db)}
        rows = [{"code": e.code, "title": e.title, "data_path": e.data_path, "starts_on": e.starts_on,
                 "ends_on": e.ends_on, "members": list(e.members),
                 "environments": sorted(names[i] for i in e.environment_ids if i in names)}
                for e in broker.all_experiments(db)]
    return render_template("admin/experiments.html", experiments=rows)


@bp.get("/audit")
@admin_required
def audit_log():
    """The audit log, newest first: shares of desktops, their revocation and guests' connections."""
    prefix = request.args.get("action", "")[:64]
    with session_scope(current_settings()) as db:
        rows = [{"at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject, "details": e.details}
                for e in audit.recent(db, limit=500, action_prefix=prefix)]
    return render_template("admin/audit.html", events=rows, action=prefix)
