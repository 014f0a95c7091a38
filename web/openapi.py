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


TIMELINE = {"type": "object", "required": ["experiment", "environments"], "properties": {
    "experiment": {"type": "string"}, "title": {"type": "string"},
    "starts_on": {"type": "string", "nullable": True}, "ends_on": {"type": "string", "nullable": True},
    "environments": {"type": "array", "items": {"type": "object", "properties": {
        "environment": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "object", "properties": {
            "version": {"type": "string"}, "first_used": {"type": "string"}, "last_used": {"type": "string"},
            "sessions": {"type": "integer"}, "users": {"type": "array", "items": {"type": "string"}}}}},
        "sessions": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "user": {"type": "string"}, "version": {"type": "string"},
            "started_at": {"type": "string"}, "ended_at": {"type": "string", "nullable": True},
            "duration_s": {"type": "integer"}, "state": {"type": "string"}}}}}}}}}


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
    paths["/api/environments/{name}/versions/{version}/citation"] = {"get": {
        "summary": "How to cite an environment version (CFF, BibTeX or DataCite JSON)",
        "operationId": "versionCitation", "security": [{}, {"bearer": []}, {"cookie": []}],
        "description": "Any logged-in user; anyone when public_citations (ASCI_PUBLIC_CITATIONS) is on.",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}},
            {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^\d{4}\.\d{2}\.\d{2}\.\d{1,4}$"}},
            {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["cff", "bibtex", "datacite"],
                                                          "default": "cff"}}],
        "responses": {"200": {"description": "The citation", "content": {
            "application/x-yaml": {"schema": {"type": "string"}},
            "application/x-bibtex": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}}}},
            **errors("BadRequest", "Unauthorized", "NotFound")}}}
    paths["/api/experiments/{code}/timeline"] = {"get": {
        "summary": "Which environment versions the experiment's members launched, when, how long, by whom",
        "operationId": "experimentTimeline",
        "description": "Members of the experiment and administrators; a token needs the sessions scope.",
        "parameters": [{"name": "code", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}}],
        "responses": {"200": json_body(TIMELINE, "Per environment: versions (bands) and sessions (marks)"),
                      **errors("BadRequest", "Unauthorized", "NotFound")}}}
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
