"""ci's part of the OpenAPI document: build jobs."""

from __future__ import annotations

from asci.openapi import AUTH_ERRORS, errors, json_body, path_parameter, ref
from ci.models import STATES

_WHEN = {"type": "string", "format": "date-time", "nullable": True}

BUILD_JOB = {"type": "object", "properties": {
    "id": {"type": "integer"}, "environment": {"type": "string"}, "state": {"type": "string", "enum": list(STATES)},
    "reasons": {"type": "array", "items": {"type": "string"}}, "attempts": {"type": "integer"},
    "max_attempts": {"type": "integer"}, "version": {"type": "string", "nullable": True},
    "error": {"type": "string"}, "not_before": _WHEN, "created_at": _WHEN, "started_at": _WHEN,
    "finished_at": _WHEN, "lease_owner": {"type": "string", "nullable": True}, "lease_expires_at": _WHEN,
    "log": {"type": "string"}}}


def fragment() -> dict:
    """Paths and schemas of the build API (administrators)."""
    return {
        "paths": {
            "/api/builds": {
                "get": {"summary": "Build jobs, newest first (administrators)", "operationId": "listBuilds",
                        "parameters": [
                            {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(STATES)}},
                            {"name": "environment", "in": "query",
                             "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}},
                            {"name": "limit", "in": "query",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                        "responses": {"200": json_body({"type": "object", "properties": {
                            "builds": {"type": "array", "items": ref("BuildJob")}}}, "Build jobs"),
                            **errors("BadRequest", *AUTH_ERRORS)}},
                "post": {"summary": "Queue a build (administrators)", "operationId": "enqueueBuild",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["environment"], "additionalProperties": False,
                             "properties": {
                                 "environment": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
                                 "reason": {"type": "string", "maxLength": 500}}}}}},
                         "responses": {"201": json_body(ref("BuildJob"), "The queued job"),
                                       **errors("BadRequest", *AUTH_ERRORS, "NotFound")}}},
            "/api/builds/{job_id}": {
                "parameters": [path_parameter("job_id", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1})],
                "get": {"summary": "One build job with its log (administrators)", "operationId": "getBuild",
                        "responses": {"200": json_body(ref("BuildJob"), "The job"),
                                      **errors(*AUTH_ERRORS, "NotFound")}}},
        },
        "schemas": {"BuildJob": BUILD_JOB},
    }
