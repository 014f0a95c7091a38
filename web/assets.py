"""Browser assets from their published npm packages, installed at set-up into web/node_modules.

``/static/vendor/bootstrap/...`` -> ``node_modules/bootstrap/dist/...``
``/static/vendor/novnc/...``     -> ``node_modules/@novnc/novnc/...`` (ES modules: core/rfb.js)
``/static/vendor/chartjs/...``   -> ``node_modules/chart.js/dist/...`` (chart.umd.js: the admin page's charts)
"""

from __future__ import annotations

from pathlib import Path

from flask import abort, send_from_directory

from asci.http import blueprint

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
PACKAGES = {
    "bootstrap": NODE_MODULES / "bootstrap" / "dist",
    "novnc": NODE_MODULES / "@novnc" / "novnc",
    "chartjs": NODE_MODULES / "chart.js" / "dist",
}

bp = blueprint("assets", __name__)


@bp.get("/static/vendor/<package>/<path:filename>")
def vendor(package: str, filename: str):
    """One file of a vendored package (404 for unknown packages or paths outside it)."""
    root = PACKAGES.get(package)
    if root is None:
        abort(404)
    if not root.is_dir():
        abort(404, description=f"{package} is not installed: run npm ci in web/ (bash .ci/provision setup)")
    response = send_from_directory(root, filename, max_age=3600)
    if filename.endswith(".js"):
        response.mimetype = "text/javascript"
    return response


def missing() -> list[str]:
    """The vendored packages that are not installed."""
    return [name for name, root in PACKAGES.items() if not root.is_dir()]
