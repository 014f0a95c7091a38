"""``/api/openapi.json``: the one OpenAPI 3 document, composed from every package's fragment."""

from __future__ import annotations

from flask import jsonify

import broker
import ci
import rpmrepo
from asci.http import CSRF_API, blueprint, current_settings
from asci.openapi import components, json_body

bp = blueprint("api", __name__, csrf=CSRF_API)


def document(server_url: str = "http://127.0.0.1:8080") -> dict:
    """The whole document: the repository, session and build APIs."""
    shared = components()
    paths: dict = {"/api/openapi.json": {"get": {
        "summary": "This document", "operationId": "openapi", "security": [],
        "responses": {"200": json_body({"type": "object"}, "OpenAPI 3")}}}}
    for fragment in (rpmrepo.openapi_fragment(), broker.openapi_fragment(), ci.openapi_fragment()):
        paths.update(fragment["paths"])
        shared["schemas"].update(fragment["schemas"])
    return {
        "openapi": "3.0.3",
        "info": {"title": "ASCI", "version": "1.0",
                 "description": "Publish RPMs, follow builds, launch and stop desktop sessions."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
        "components": shared,
    }


@bp.get("/api/openapi.json")
def openapi():
    return jsonify(document(current_settings().public_url))
