"""``/healthz``: whether the platform's services answer."""

from __future__ import annotations

from flask import jsonify

from asci.db import current_revision, ping
from asci.errors import AsciError
from asci.http import blueprint, current_settings
from asci.services import docker_status, registry_status

bp = blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when the database answers; Docker and registry reachability are reported alongside."""
    settings = current_settings()
    checks: dict[str, dict] = {}
    try:
        ping(settings)
        checks["database"] = {"ok": True, "revision": current_revision(settings)}
    except AsciError as exc:
        checks["database"] = {"ok": False, "error": str(exc)}
    checks["docker"] = docker_status(settings)
    checks["registry"] = registry_status(settings)
    healthy = checks["database"]["ok"]
    return jsonify(status="ok" if healthy else "failing", checks=checks), (200 if healthy else 503)
