"""The repository's part of the OpenAPI document: listing and uploading packages."""

from __future__ import annotations

from asci.openapi import AUTH_ERRORS, errors, json_body, path_parameter, ref

PACKAGE = {"type": "object", "properties": {
    "repo": {"type": "string"}, "nevra": {"type": "string"}, "name": {"type": "string"},
    "epoch": {"type": "integer"}, "version": {"type": "string"}, "release": {"type": "string"},
    "arch": {"type": "string"}, "filename": {"type": "string"}, "sha256": {"type": "string"},
    "size": {"type": "integer"}, "buildtime": {"type": "string", "format": "date-time"},
    "summary": {"type": "string"}, "requires": {"type": "array", "items": {"type": "string"}},
    "provides": {"type": "array", "items": {"type": "string"}},
    "published_at": {"type": "string", "format": "date-time"},
    "published_by_id": {"type": "integer", "nullable": True,
                        "description": "who published it (administrators' tokens only)"},
    "retracted": {"type": "boolean"},
    "retracted_at": {"type": "string", "format": "date-time", "nullable": True}}}

PUBLISH_RESULT = {"type": "object", "properties": {
    "repo": {"type": "string"}, "revision": {"type": "string", "nullable": True},
    "event_id": {"type": "integer", "nullable": True},
    "packages": {"type": "array", "items": {"type": "object"}}}}


def fragment() -> dict:
    """Paths and schemas of the repository API."""
    repo = path_parameter("repo", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"})
    return {
        "paths": {"/api/repos/{repo}/packages": {
            "parameters": [repo],
            "get": {"summary": "The repository's packages", "operationId": "listPackages",
                    "security": [{}, {"bearer": []}],
                    "parameters": [{"name": "all", "in": "query",
                                    "schema": {"type": "string", "enum": ["1", "true", "0", "false"]},
                                    "description": "include retracted packages"}],
                    "responses": {"200": json_body({"type": "object", "properties": {
                        "repo": {"type": "string"}, "packages": {"type": "array", "items": ref("Package")}}},
                        "Packages by name"), **errors("BadRequest", "Unauthorized", "NotFound")}},
            "post": {"summary": "Publish RPMs (all or nothing): a token with the publish:<repo> scope, of a user "
                                "granted the right to publish into that repository", "operationId": "publishPackages",
                     "security": [{"bearer": []}],
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                         "type": "object", "required": ["file"], "properties": {
                             "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                     "responses": {"201": json_body(ref("PublishResult"), "Published"),
                                   "200": json_body(ref("PublishResult"), "Every file was already published"),
                                   **errors("BadRequest", *AUTH_ERRORS, "NotFound", "Conflict",
                                            "PayloadTooLarge", "Unavailable")}}}},
        "schemas": {"Package": PACKAGE, "PublishResult": PUBLISH_RESULT},
    }
