"""The OpenAPI 3 document of the broker API (``/api/openapi.json``)."""

from __future__ import annotations


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {str(code): {"$ref": f"#/components/responses/{name}"} for code, name in
          ((400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"))}


def document(server_url: str = "http://127.0.0.1:8080") -> dict:
    """The whole document."""
    session_id = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    error = _json(_ref("Error"), "")
    return {
        "openapi": "3.0.3",
        "info": {"title": "ASCI session broker", "version": "1.0",
                 "description": "Launch, list and stop desktop sessions of environment versions."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": {
            "/api/sessions": {
                "post": {"summary": "Launch a session", "operationId": "createSession",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": _ref("SessionRequest")}}},
                         "responses": {"201": _json(_ref("Session"), "The session, running"), **ERRORS,
                                       "429": {"$ref": "#/components/responses/Quota"},
                                       "502": _json(_ref("Error"), "The desktop failed to start"),
                                       "503": _json(_ref("Error"), "No node has room")}},
                "get": {"summary": "List my sessions (administrators: all=1 for everyone's)",
                        "operationId": "listSessions",
                        "parameters": [{"name": "all", "in": "query", "schema": {"type": "string", "enum": ["1"]}}],
                        "responses": {"200": _json({"type": "object", "properties": {
                            "sessions": {"type": "array", "items": _ref("Session")}}}, "Sessions, newest first"),
                            **ERRORS}}},
            "/api/sessions/{session_id}": {
                "parameters": [session_id],
                "get": {"summary": "One of my sessions", "operationId": "getSession",
                        "responses": {"200": _json(_ref("Session"), "The session"), **ERRORS}},
                "delete": {"summary": "Stop one of my sessions", "operationId": "stopSession",
                           "responses": {"200": _json(_ref("Session"), "The session, stopped"), **ERRORS}}},
            "/api/nodes": {"get": {"summary": "Nodes, capacity and usage (administrators)", "operationId": "listNodes",
                                   "responses": {"200": _json({"type": "object", "properties": {
                                       "nodes": {"type": "array", "items": _ref("Node")}}}, "Nodes"), **ERRORS}}},
            "/api/health": {"get": {"summary": "Database and node reachability (administrators)",
                                    "operationId": "health",
                                    "responses": {"200": _json({"type": "object"}, "Healthy"),
                                                  "503": _json({"type": "object"}, "No node answers"), **ERRORS}}},
            "/api/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                                          "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "session"}},
            "responses": {"BadRequest": error | {"description": "Malformed or absurd request"},
                          "Unauthorized": error | {"description": "Not logged in, or a bad token"},
                          "Forbidden": error | {"description": "Not allowed (e.g. not a member of the experiment)"},
                          "NotFound": error | {"description": "No such thing visible to you"},
                          "Quota": error | {"description": "Too many active sessions"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "SessionRequest": {"type": "object", "required": ["environment", "experiment"],
                                   "additionalProperties": False, "properties": {
                                       "environment": {"type": "string"},
                                       "version": {"type": "string", "default": "current"},
                                       "experiment": {"type": "string"},
                                       "gpu": {"type": "boolean", "default": False},
                                       "cpus": {"type": "number", "minimum": 0.1},
                                       "memory": {"oneOf": [{"type": "integer"}, {"type": "string",
                                                                                  "example": "4g"}]}}},
                "Session": {"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "state": {"type": "string", "enum": ["pending", "starting", "running", "stopping", "stopped",
                                                         "failed", "lost"]},
                    "message": {"type": "string"}, "user": {"type": "string"}, "experiment": {"type": "string"},
                    "environment": {"type": "string"}, "version": {"type": "string"}, "image": {"type": "string"},
                    "image_digest": {"type": "string"}, "node": {"type": "string", "nullable": True},
                    "vnc_port": {"type": "integer", "nullable": True}, "display": {"type": "integer", "nullable": True},
                    "cpus": {"type": "number"}, "memory_bytes": {"type": "integer"}, "gpu": {"type": "boolean"},
                    "gpu_uuid": {"type": "string", "nullable": True},
                    **{key: {"type": "string", "format": "date-time", "nullable": True}
                       for key in ("created_at", "started_at", "stopped_at", "last_activity")}}},
                "Node": {"type": "object", "properties": {
                    "name": {"type": "string"}, "docker_url": {"type": "string"},
                    "state": {"type": "string", "enum": ["up", "down"]}, "cpus": {"type": "number"},
                    "memory_bytes": {"type": "integer"}, "max_sessions": {"type": "integer"},
                    "ports": {"type": "array", "items": {"type": "integer"}},
                    "gpus": {"type": "array", "items": {"type": "object"}}, "used": {"type": "object"},
                    "last_seen": {"type": "string", "nullable": True}, "last_error": {"type": "string"}}},
            },
        },
    }
