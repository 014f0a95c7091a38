"""The files API's part of the OpenAPI document (merged into the broker's fragment)."""

from __future__ import annotations

from asci.config import Settings
from asci.openapi import AUTH_ERRORS, errors, json_body, path_parameter, ref

MAX_ID = 2**63 - 1
FLAG = {"type": "string", "enum": ["1", "true", "0", "false"]}
_SESSION = path_parameter("session_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID})
# What the document promises to take (the API takes more: any name but the refused ones, broker.file_paths):
# '/'-separated names of letters, digits and " _.+=,@-", not starting with "." (so never "." or "..").
_NAME = "[A-Za-z0-9_][A-Za-z0-9 _.+=,@-]{0,100}"
_PATH_SCHEMA = {"type": "string", "pattern": f"^{_NAME}(/{_NAME}){{0,15}}$", "maxLength": 4000, "example": "results/run1.h5"}
_PATH = {**path_parameter("path", _PATH_SCHEMA),
         "description": "relative to the root, '/'-separated (sent percent-encoded); no '..', '.', '//', NUL, "
                        "absolute paths, or symlinks whose real path leaves the root"}
_FOLDER = {**path_parameter("folder", {**_PATH_SCHEMA, "example": "results"}),
           "description": "a folder relative to the root"}
_ARCHIVE = {"name": "archive", "in": "query", "description": "a folder as a zip or tar stream",
            "schema": {"type": "string", "enum": ["zip", "tar"]}}

SCHEMAS = {
    "FileEntry": {"type": "object", "required": ["name", "type", "size", "mtime"], "properties": {
        "name": {"type": "string"}, "type": {"type": "string", "enum": ["file", "dir", "link", "other"]},
        "size": {"type": "integer", "description": "bytes"},
        "mtime": {"type": "number", "description": "seconds since the epoch"}}},
    "FileListing": {"type": "object", "required": ["root", "path", "entries"], "properties": {
        "root": {"type": "string", "enum": ["home", "data"]}, "path": {"type": "string"},
        "entries": {"type": "array", "items": ref("FileEntry")}}},
    "UploadedFile": {"type": "object", "required": ["root", "path", "name", "type", "size", "mtime"], "properties": {
        "root": {"type": "string", "enum": ["home"]}, "path": {"type": "string"}, "name": {"type": "string"},
        "type": {"type": "string"}, "size": {"type": "integer"}, "mtime": {"type": "number"}}},
}

_READ_ERRORS = ("BadRequest", *AUTH_ERRORS, "NotFound", "Conflict")
_BYTES = {"schema": {"type": "string", "format": "binary"}}


def _listing(what: str, operation: str) -> dict:
    return {"summary": f"List a folder of {what}", "operationId": operation,
            "responses": {"200": json_body(ref("FileListing"), "The folder's entries"),
                          **errors(*_READ_ERRORS), "502": json_body(ref("Error"), "The desktop's side failed")}}


def _download(what: str, operation: str) -> dict:
    return {"summary": f"Download a file of {what} (streamed, Content-Length), a folder with archive=zip|tar "
                       "(without: its listing)",
            "operationId": operation, "parameters": [_ARCHIVE],
            "responses": {"200": {"description": "The file's bytes, the folder's archive stream, or the "
                                                 "folder's listing",
                                  "content": {"application/octet-stream": _BYTES, "application/zip": _BYTES,
                                              "application/x-tar": _BYTES,
                                              "application/json": {"schema": ref("FileListing")}}},
                          **errors(*_READ_ERRORS), "502": json_body(ref("Error"), "The desktop's side failed")}}


def _reads(root: str, what: str, tag: str) -> dict:
    base = f"/api/sessions/{{session_id}}/{root}"
    return {
        f"{base}/": {"parameters": [_SESSION], "get": _listing(what, f"list{tag}Root")},
        f"{base}/{{folder}}/": {"parameters": [_SESSION, _FOLDER], "get": _listing(what, f"list{tag}Folder")},
        f"{base}/{{path}}": {"parameters": [_SESSION, _PATH], "get": _download(what, f"download{tag}")},
    }


def fragment(settings: Settings | None = None) -> dict:
    """Paths and schemas of the files API (the upload limit from ``settings``)."""
    settings = settings or Settings()
    paths = {**_reads("files", "the desktop's home", "Home"), **_reads("data", "the experiment's data (read only)",
                                                                         "Data")}
    file_path = paths["/api/sessions/{session_id}/files/{path}"]
    file_path["put"] = {
        "summary": "Upload a file into the home (folders made as needed; owners and guests with control)",
        "operationId": "uploadHome",
        "parameters": [{"name": "overwrite", "in": "query", "schema": FLAG,
                        "description": "replace an existing file (else 409)"}],
        "requestBody": {"required": True, "description": f"the file's bytes, at most "
                                                         f"{settings.files_max_upload_bytes} (Content-Length)",
                        "content": {"application/octet-stream": _BYTES}},
        "responses": {"201": json_body(ref("UploadedFile"), "The file, written whole as the session's user"),
                      **errors(*_READ_ERRORS, "PayloadTooLarge"),
                      "411": json_body(ref("Error"), "No Content-Length"),
                      "502": json_body(ref("Error"), "The desktop's side failed")}}
    file_path["delete"] = {
        "summary": "Delete a file of the home (owners and guests with control)", "operationId": "deleteHome",
        "responses": {"204": {"description": "Deleted"}, **errors(*_READ_ERRORS),
                      "502": json_body(ref("Error"), "The desktop's side failed")}}
    return {"paths": paths, "schemas": dict(SCHEMAS)}


__all__ = ["fragment"]
