"""``/api/openapi.json``: the one OpenAPI 3 document, composed from every package's fragment."""

from __future__ import annotations

from flask import jsonify

import broker
import ci
import rpmrepo
from asci.config import Settings
from asci.http import CSRF_API, blueprint, current_settings, known_args
from asci.openapi import AUTH_ERRORS, components, errors, json_body

bp = blueprint("api", __name__, csrf=CSRF_API)


HEALTH = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string", "enum": ["ok", "failing"]},
    "checks": {"type": "object", "description": "administrators and tokens with the metrics scope only"}}}


def document(settings: Settings | None = None) -> dict:
    """The whole document: the repository, session and build APIs, and the health check."""
    settings = settings or Settings()
    shared = components()
    paths: dict = {
        "/api/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi", "security": [],
            "responses": {"200": json_body({"type": "object"}, "OpenAPI 3")}}},
        "/healthz": {"get": {
            "summary": "Whether the platform answers (details for administrators and metrics tokens)",
            "operationId": "healthz", "security": [{}, {"bearer": []}, {"cookie": []}],
            "responses": {"200": json_body(HEALTH, "The database answers"),
                          "503": json_body(HEALTH, "The database does not answer (Retry-After)"),
                          **errors(AUTH_ERRORS[0])}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (administrators, or a token with the metrics scope; "
                       "only asci_database_up 0 while the database does not answer)",
            "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text exposition", "content": {
                "text/plain": {"schema": {"type": "string"}}}}, **errors(*AUTH_ERRORS)}}},
    }
    for fragment in (rpmrepo.openapi_fragment(), broker.openapi_fragment(settings), ci.openapi_fragment()):
        paths.update(fragment["paths"])
        shared["schemas"].update(fragment["schemas"])
    return {
        "openapi": "3.0.3",
        "info": {"title": "ASCI", "version": "1.0",
                 "description": "Publish RPMs, follow builds, launch and stop desktop sessions."},
        "servers": [{"url": settings.public_url}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
        "components": shared,
    }


@bp.get("/api/openapi.json")
def openapi():
    known_args()
    return jsonify(document(current_settings()))
