"""The broker's part of the OpenAPI document: sessions, nodes and health."""

from __future__ import annotations

from asci.openapi import AUTH_ERRORS, errors, json_body, path_parameter, ref
from broker.models import NodeState, SessionState

_WHEN = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS = {
    "SessionRequest": {"type": "object", "required": ["environment", "experiment"], "additionalProperties": False,
                       "properties": {
                           "environment": {"type": "string", "minLength": 1},
                           "version": {"type": "string", "minLength": 1, "default": "current"},
                           "experiment": {"type": "string", "minLength": 1},
                           "gpu": {"type": "boolean", "default": False},
                           "cpus": {"type": "number", "minimum": 0.1},
                           "memory": {"oneOf": [{"type": "integer"}, {"type": "string", "example": "4g"}]}}},
    "Session": {"type": "object", "properties": {
        "id": {"type": "integer"}, "state": {"type": "string", "enum": [s.value for s in SessionState]},
        "message": {"type": "string"}, "user": {"type": "string"}, "experiment": {"type": "string"},
        "environment": {"type": "string", "nullable": True}, "version": {"type": "string", "nullable": True},
        "image": {"type": "string"}, "image_digest": {"type": "string"},
        "node": {"type": "string", "nullable": True}, "cpus": {"type": "number"},
        "memory_bytes": {"type": "integer"}, "gpu": {"type": "boolean"},
        "gpu_uuid": {"type": "string", "nullable": True},
        **{key: _WHEN for key in ("created_at", "started_at", "stopped_at", "last_activity")}}},
    "Node": {"type": "object", "properties": {
        "name": {"type": "string"}, "docker_url": {"type": "string"},
        "state": {"type": "string", "enum": [s.value for s in NodeState]}, "cpus": {"type": "number"},
        "memory_bytes": {"type": "integer"}, "max_sessions": {"type": "integer"},
        "gpus": {"type": "array", "items": {"type": "object"}}, "used": {"type": "object"},
        "last_seen": _WHEN, "last_error": {"type": "string"}}},
}


def fragment() -> dict:
    """Paths and schemas of the session API."""
    session_id = path_parameter("session_id", {"type": "integer", "minimum": 0})
    return {
        "paths": {
            "/api/sessions": {
                "post": {"summary": "Launch a session", "operationId": "createSession",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": ref("SessionRequest")}}},
                         "responses": {"201": json_body(ref("Session"), "The session, running"),
                                       **errors("BadRequest", *AUTH_ERRORS, "NotFound", "TooManyRequests",
                                                "Unavailable"),
                                       "502": json_body(ref("Error"), "The desktop failed to start")}},
                "get": {"summary": "List my sessions (administrators: all=1 for everyone's)",
                        "operationId": "listSessions",
                        "parameters": [{"name": "all", "in": "query", "schema": {"type": "string", "enum": ["1"]}}],
                        "responses": {"200": json_body({"type": "object", "properties": {
                            "sessions": {"type": "array", "items": ref("Session")}}}, "Sessions, newest first"),
                            **errors(*AUTH_ERRORS)}}},
            "/api/sessions/{session_id}": {
                "parameters": [session_id],
                "get": {"summary": "One of my sessions", "operationId": "getSession",
                        "responses": {"200": json_body(ref("Session"), "The session"),
                                      **errors("BadRequest", *AUTH_ERRORS, "NotFound")}},
                "delete": {"summary": "Stop one of my sessions", "operationId": "stopSession",
                           "responses": {"200": json_body(ref("Session"), "The session, stopped"),
                                         **errors("BadRequest", *AUTH_ERRORS, "NotFound")}}},
            "/api/nodes": {"get": {"summary": "Nodes, capacity and usage (administrators)", "operationId": "listNodes",
                                   "responses": {"200": json_body({"type": "object", "properties": {
                                       "nodes": {"type": "array", "items": ref("Node")}}}, "Nodes"),
                                       **errors(*AUTH_ERRORS)}}},
            "/api/health": {"get": {"summary": "Database and node reachability (administrators)",
                                    "operationId": "health",
                                    "responses": {"200": json_body({"type": "object"}, "Healthy"),
                                                  "503": json_body({"type": "object"}, "No node answers"),
                                                  **errors(*AUTH_ERRORS)}}},
        },
        "schemas": SCHEMAS,
    }
