"""The broker's part of the OpenAPI document: sessions, nodes and health."""

from __future__ import annotations

from asci.config import Settings
from asci.openapi import AUTH_ERRORS, errors, json_body, path_parameter, ref
from broker.files_openapi import fragment as files_fragment
from broker.models import CapacitySource, NodeState, SessionState, ShareMode
from broker.resources import MIN_MEMORY_GUARANTEE, MIN_MEMORY_LIMIT, memory_pattern

_WHEN = {"type": "string", "format": "date-time", "nullable": True}
MAX_ID = 2**63 - 1
FLAG = {"type": "string", "enum": ["1", "true", "0", "false"]}


def _memory(settings: Settings, example: str, description: str, minimum: int) -> dict:
    return {"oneOf": [
        {"type": "integer", "minimum": minimum, "maximum": settings.session_max_memory_mb << 20,
         "description": "bytes"},
        {"type": "string", "pattern": memory_pattern(settings, minimum >> 20), "example": example,
         "description": "whole MiB (512m) or GiB (4g)"}], "description": description}


def session_request(settings: Settings) -> dict:
    """What a launch request may hold, with the configured limits."""
    return {"type": "object", "required": ["environment", "experiment"], "additionalProperties": False,
            "example": {"environment": "demo", "experiment": "DEMO-001"},
            "properties": {
                "environment": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
                "version": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$", "default": "current",
                            "description": "a version such as 2026.11.25.1, or current"},
                "experiment": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                "gpu": {"type": "boolean", "default": False},
                "cpus": {"type": "number", "minimum": 0.1, "maximum": settings.session_max_cpus,
                         "description": "CPU limit"},
                "memory": _memory(settings, "4g", "memory limit", MIN_MEMORY_LIMIT),
                "cpu_guarantee": {"type": "number", "minimum": 0.01, "maximum": settings.session_max_cpus,
                                  "description": "CPUs placement counts for the session"},
                "memory_guarantee": _memory(settings, "512m", "memory placement counts for the session",
                                            MIN_MEMORY_GUARANTEE)}}


SCHEMAS = {
    "Session": {"type": "object", "properties": {
        "id": {"type": "integer"}, "state": {"type": "string", "enum": [s.value for s in SessionState]},
        "message": {"type": "string"}, "user": {"type": "string"}, "experiment": {"type": "string"},
        "environment": {"type": "string", "nullable": True}, "version": {"type": "string", "nullable": True},
        "image": {"type": "string"}, "image_digest": {"type": "string"},
        "node": {"type": "string", "nullable": True}, "cpus": {"type": "number", "description": "CPU limit"},
        "memory_bytes": {"type": "integer", "description": "memory limit"},
        "cpu_guarantee": {"type": "number"}, "memory_guarantee_bytes": {"type": "integer"}, "gpu": {"type": "boolean"},
        "gpu_uuid": {"type": "string", "nullable": True},
        **{key: _WHEN for key in ("created_at", "started_at", "stopped_at", "last_activity")}}},
    "Share": {"type": "object", "properties": {
        "id": {"type": "integer"}, "session_id": {"type": "integer"}, "owner": {"type": "string"},
        "guest": {"type": "string"}, "mode": {"type": "string", "enum": [m.value for m in ShareMode]},
        "environment": {"type": "string"}, "version": {"type": "string"}, "experiment": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "connected": {"type": "boolean", "description": "the guest's viewer is connected now"}}},
    "ShareRequest": {"type": "object", "required": ["user"], "additionalProperties": False,
                     "example": {"user": "colleague", "mode": "view"}, "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 200,
                 "description": "a member of the session's experiment"},
        "mode": {"type": "string", "enum": [m.value for m in ShareMode], "default": "view"}}},
    "Node": {"type": "object", "properties": {
        "name": {"type": "string"}, "docker_url": {"type": "string"},
        "state": {"type": "string", "enum": [s.value for s in NodeState]},
        "cpus": {"type": "number", "description": "CPUs of the node"},
        "memory_bytes": {"type": "integer", "description": "memory of the node"},
        "capacity_source": {"type": "string", "enum": [s.value for s in CapacitySource]},
        "reserve": {"type": "object", "properties": {"cpus": {"type": "number"}, "memory_bytes": {"type": "integer"}}},
        "overcommit": {"type": "object", "properties": {"cpus": {"type": "number"}, "memory": {"type": "number"}}},
        "schedulable": {"type": "object", "description": "(capacity - reserve) x overcommit: what guarantees may add up to",
                        "properties": {"cpus": {"type": "number"}, "memory_bytes": {"type": "integer"}}},
        "max_sessions": {"type": "integer"},
        "gpus": {"type": "array", "items": {"type": "object"}},
        "used": {"type": "object", "description": "sessions and the guarantees they hold"},
        "last_seen": _WHEN, "last_error": {"type": "string"}}},
}


def fragment(settings: Settings | None = None) -> dict:
    """Paths and schemas of the session API (limits from ``settings``, the defaults when None)."""
    settings = settings or Settings()
    files_part = files_fragment(settings)
    session_id = path_parameter("session_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID})
    return {
        "paths": {
            "/api/sessions": {
                "post": {"summary": "Launch a session (scope sessions)", "operationId": "createSession",
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
                            {"name": "all", "in": "query", "schema": FLAG,
                             "description": "everyone's sessions (administrators; a token needs admin)"},
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
            "/api/sessions/{session_id}/shares": {
                "parameters": [session_id],
                "get": {"summary": "The shares of one of my sessions, who may be invited, who is connected",
                        "operationId": "listShares",
                        "responses": {"200": json_body({"type": "object", "properties": {
                            "shares": {"type": "array", "items": ref("Share")},
                            "members": {"type": "array", "items": {"type": "string"}},
                            "viewers": {"type": "array", "items": {"type": "object"}}}}, "Shares"),
                            **errors("BadRequest", *AUTH_ERRORS, "NotFound")}},
                "post": {"summary": "Share one of my running sessions with a member of its experiment",
                         "operationId": "createShare",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": ref("ShareRequest")}}},
                         "responses": {"201": json_body(ref("Share"), "The share"),
                                       **errors("BadRequest", *AUTH_ERRORS, "NotFound", "Conflict",
                                                "Unprocessable")}}},
            "/api/sessions/{session_id}/shares/{share_id}": {
                "parameters": [session_id, path_parameter("share_id", {"type": "integer", "minimum": 0,
                                                                       "maximum": MAX_ID})],
                "delete": {"summary": "Revoke a share (its guest is disconnected within seconds)",
                           "operationId": "revokeShare",
                           "responses": {"200": json_body({"type": "object"}, "The share, revoked"),
                                         **errors("BadRequest", *AUTH_ERRORS, "NotFound")}}},
            "/api/shared": {"get": {"summary": "Desktops other users share with me", "operationId": "sharedWithMe",
                                    "responses": {"200": json_body({"type": "object", "properties": {
                                        "shares": {"type": "array", "items": ref("Share")}}}, "Shares"),
                                        **errors(*AUTH_ERRORS)}}},
            "/api/nodes": {"get": {"summary": "Nodes, capacity and usage (administrators)", "operationId": "listNodes",
                                   "responses": {"200": json_body({"type": "object", "properties": {
                                       "nodes": {"type": "array", "items": ref("Node")}}}, "Nodes"),
                                       **errors(*AUTH_ERRORS)}}},
            "/api/health": {"get": {"summary": "Database and node reachability, the parts' heartbeats "
                                               "(administrators)",
                                    "operationId": "health",
                                    "responses": {"200": json_body({"type": "object"}, "Healthy"),
                                                  "503": json_body({"type": "object"}, "No node answers "
                                                                   "(Retry-After)"),
                                                  **errors(*AUTH_ERRORS)}}},
            **files_part["paths"],
        },
        "schemas": {**SCHEMAS, "SessionRequest": session_request(settings), **files_part["schemas"]},
    }
