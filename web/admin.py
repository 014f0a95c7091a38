"""Administration: nodes, all sessions, builds and their logs, repository packages, experiments."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from asci import db
from web import broker_link
from web.security import admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _settings():
    from web import settings_of

    return settings_of(current_app)


@bp.get("/")
@admin_required
def index():
    return render_template("admin/index.html")


@bp.get("/nodes")
@admin_required
def nodes():
    from broker.models import ACTIVE_STATES, DesktopSession, Node

    with db.session_scope(_settings()) as dbs:
        rows = []
        for node in dbs.scalars(select(Node).order_by(Node.name)):
            active = dbs.scalar(select(db_count()).select_from(DesktopSession).where(
                DesktopSession.node_id == node.id, DesktopSession.state.in_(ACTIVE_STATES)))
            rows.append({"name": node.name, "docker_url": node.docker_url, "vnc_host": node.vnc_host,
                         "state": node.state, "cpus": node.cpus, "memory_gib": node.memory_bytes / (1 << 30),
                         "max_sessions": node.max_sessions, "active": active, "gpus": node.gpus or [],
                         "last_seen": node.last_seen, "last_error": node.last_error,
                         "ports": f"{node.port_min}-{node.port_max}"})
    return render_template("admin/nodes.html", nodes=rows)


def db_count():
    from sqlalchemy import func

    return func.count()


@bp.get("/sessions")
@admin_required
def sessions():
    from web.pages import _session_dict

    with db.session_scope(_settings()) as dbs:
        rows = [_session_dict(row) for row in broker_link.sessions_of(dbs, None, limit=500)]
    return render_template("pages/sessions.html", sessions=rows, everyone=True)


@bp.get("/builds")
@admin_required
def builds():
    from builder.models import Environment, EnvironmentVersion

    settings = _settings()
    with db.session_scope(settings) as dbs:
        versions = [{"id": v.id, "environment": v.environment.name, "version": v.version, "status": v.status,
                     "created_at": v.created_at, "finished_at": v.finished_at, "error": v.error,
                     "current": v.environment.current_version == v.version}
                    for v in dbs.scalars(select(EnvironmentVersion).join(Environment)
                                         .order_by(EnvironmentVersion.id.desc()).limit(300))]
        jobs = _build_jobs(dbs)
    return render_template("admin/builds.html", versions=versions, jobs=jobs)


def _build_jobs(dbs) -> list[dict] | None:
    """Rows of the ci ``build_jobs`` table when it exists (read generically: its columns may change)."""
    if "build_jobs" not in sa_inspect(dbs.get_bind()).get_table_names():
        return None
    result = dbs.execute(text("SELECT * FROM build_jobs ORDER BY id DESC LIMIT 200"))
    columns = list(result.keys())
    return [dict(zip(columns, row)) for row in result]


@bp.get("/builds/<int:version_id>/log")
@admin_required
def build_log(version_id: int):
    from builder.models import EnvironmentVersion

    with db.session_scope(_settings()) as dbs:
        version = dbs.get(EnvironmentVersion, version_id)
        if version is None:
            abort(404)
        info = {"environment": version.environment.name, "version": version.version, "status": version.status,
                "log": version.build_log, "error": version.error, "dockerfile": version.dockerfile,
                "lock": version.lock, "image": version.image_reference, "digest": version.image_digest}
    return render_template("admin/build_log.html", v=info)


@bp.get("/packages")
@admin_required
def packages():
    settings = _settings()
    repo = request.args.get("repo") or settings.default_repo
    try:
        import rpmrepo
    except ImportError:
        return render_template("admin/packages.html", repo=repo, repos=[], packages=[], error="rpmrepo is missing")
    error = ""
    rows = []
    with db.session_scope(settings) as dbs:
        try:
            rows = [p.as_dict() for p in rpmrepo.list_packages(dbs, repo, include_retracted=True)]
        except rpmrepo.RepoError as exc:
            error = str(exc)
    try:
        repos = [getattr(r, "name", r) for r in rpmrepo.list_repos(settings)]
    except Exception:
        repos = [settings.default_repo]
    return render_template("admin/packages.html", repo=repo, repos=repos, packages=rows, error=error)


@bp.get("/experiments")
@admin_required
def experiments():
    from broker.models import Experiment, ExperimentEnvironment, ExperimentMember
    from builder.models import Environment

    with db.session_scope(_settings()) as dbs:
        rows = []
        for exp in dbs.scalars(select(Experiment).order_by(Experiment.code)):
            members = [m.user.username for m in dbs.scalars(
                select(ExperimentMember).where(ExperimentMember.experiment_id == exp.id))]
            envs = list(dbs.scalars(select(Environment.name).join(
                ExperimentEnvironment, ExperimentEnvironment.environment_id == Environment.id)
                .where(ExperimentEnvironment.experiment_id == exp.id)))
            rows.append({"code": exp.code, "title": exp.title, "data_path": exp.data_path, "starts_on": exp.starts_on,
                         "ends_on": exp.ends_on, "members": sorted(members), "environments": sorted(envs)})
    return render_template("admin/experiments.html", experiments=rows)
