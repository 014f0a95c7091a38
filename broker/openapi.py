"""The broker's part of the OpenAPI document: sessions, nodes and health."""

from __future__ import annotations

from asci.openapi import AUTH_ERRORS, errors, json_body, path_parameter, ref
from broker.models import CapacitySource, NodeState, SessionState

_WHEN = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS = {
    "SessionRequest": {"type": "object", "required": ["environment", "experiment"], "additionalProperties": False,
                       "properties": {
                           "environment": {"type": "string", "minLength": 1},
                           "version": {"type": "string", "minLength": 1, "default": "current"},
                           "experiment": {"type": "string", "minLength": 1},
                           "gpu": {"type": "boolean", "default": False},
                           "cpus": {"type": "number", "minimum": 0.1, "description": "CPU limit"},
                           "memory": {"oneOf": [{"type": "integer"}, {"type": "string", "example": "4g"}],
                                      "description": "memory limit"},
                           "cpu_guarantee": {"type": "number", "minimum": 0.01,
                                             "description": "CPUs placement counts for the session"},
                           "memory_guarantee": {"oneOf": [{"type": "integer"}, {"type": "string", "example": "512m"}],
                                                "description": "memory placement counts for the session"}}},
    "Session": {"type": "object", "properties": {
        "id": {"type": "integer"}, "state": {"type": "string", "enum": [s.value for s in SessionState]},
        "message": {"type": "string"}, "user": {"type": "string"}, "experiment": {"type": "string"},
        "environment": {"type": "string", "nullable": True}, "version": {"type": "string", "nullable": True},
        "image": {"type": "string"}, "image_digest": {"type": "string"},
        "node": {"type": "string", "nullable": True}, "vnc_port": {"type": "integer", "nullable": True},
        "display": {"type": "integer", "nullable": True}, "cpus": {"type": "number", "description": "CPU limit"},
        "memory_bytes": {"type": "integer", "description": "memory limit"},
        "cpu_guarantee": {"type": "number"}, "memory_guarantee_bytes": {"type": "integer"}, "gpu": {"type": "boolean"},
        "gpu_uuid": {"type": "string", "nullable": True},
        **{key: _WHEN for key in ("created_at", "started_at", "stopped_at", "last_activity")}}},
    "Node": {"type": "object", "properties": {
        "name": {"type": "string"}, "docker_url": {"type": "string"}, "vnc_host": {"type": "string"},
        "state": {"type": "string", "enum": [s.value for s in NodeState]},
        "cpus": {"type": "number", "description": "CPUs of the node"},
        "memory_bytes": {"type": "integer", "description": "memory of the node"},
        "capacity_source": {"type": "string", "enum": [s.value for s in CapacitySource]},
        "reserve": {"type": "object", "properties": {"cpus": {"type": "number"}, "memory_bytes": {"type": "integer"}}},
        "overcommit": {"type": "object", "properties": {"cpus": {"type": "number"}, "memory": {"type": "number"}}},
        "schedulable": {"type": "object", "description": "(capacity - reserve) x overcommit: what guarantees may add up to",
                        "properties": {"cpus": {"type": "number"}, "memory_bytes": {"type": "integer"}}},
        "max_sessions": {"type": "integer"},
        "ports": {"type": "array", "items": {"type": "integer"}},
        "gpus": {"type": "array", "items": {"type": "object"}},
        "used": {"type": "object", "description": "sessions and the guarantees they hold"},
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
                                       **errors("BadRequest", *AUTH_ERRORS, "NotFound", "Unprocessable",
                                                "TooManyRequests", "Unavailable"),
                                       "502": json_body(ref("Error"), "The desktop failed to start")}},
                "get": {"summary": "List my sessions, newest first, a page at a time "
                                   "(administrators: all=1 for everyone's)",
                        "operationId": "listSessions",
                        "parameters": [
                            {"name": "all", "in": "query", "schema": {"type": "string", "enum": ["1"]}},
                            {"name": "limit", "in": "query", "description": "sessions per page",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                            {"name": "after", "in": "query", "description": "the next cursor of the previous page",
                             "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
                        "responses": {"200": json_body({"type": "object", "required": ["sessions", "next"],
                                                        "properties": {
                            "sessions": {"type": "array", "items": ref("Session")},
                            "next": {"type": "string", "nullable": True,
                                     "description": "pass as after= for the next page; null on the last page"}}},
                            "Sessions, newest first"),
                            **errors("BadRequest", *AUTH_ERRORS)}}},
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
