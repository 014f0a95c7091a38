"""Helpers for the OpenAPI 3 fragments each package contributes (composed by the web package).

A fragment is ``{"paths": {...}, "schemas": {...}}``; every operation refers to the shared
``Error`` schema and the standard error responses defined here, so one error contract is
described once.
"""

from __future__ import annotations

ERROR_SCHEMA = {"type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}, "kind": {"type": "string"}}}

STANDARD_RESPONSES = {
    "BadRequest": "Malformed or absurd request",
    "Unauthorized": "Not logged in, or a bad token",
    "Forbidden": "Not allowed",
    "NotFound": "No such thing visible to you",
    "MethodNotAllowed": "The method is not supported on this path",
    "PayloadTooLarge": "The request body is too large",
    "Conflict": "The request conflicts with what exists",
    "Unprocessable": "Well-formed but impossible to satisfy",
    "TooManyRequests": "Too many requests or active sessions",
    "Unavailable": "Temporarily unavailable; retry after the Retry-After header",
}
_CODES = {"BadRequest": 400, "Unauthorized": 401, "Forbidden": 403, "NotFound": 404, "MethodNotAllowed": 405,
          "Conflict": 409, "PayloadTooLarge": 413, "Unprocessable": 422, "TooManyRequests": 429,
          "Unavailable": 503}


def ref(name: str) -> dict:
    """A reference to a schema of the document."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict, description: str) -> dict:
    """A response (or request body) carrying JSON of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*names: str) -> dict:
    """Standard error responses by name (``errors("BadRequest", "Unauthorized")``)."""
    return {str(_CODES[name]): {"$ref": f"#/components/responses/{name}"} for name in names}


AUTH_ERRORS = ("Unauthorized", "Forbidden")


def components() -> dict:
    """The shared components: the Error schema, the standard responses, the security schemes."""
    error = json_body(ref("Error"), "")
    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "cookie": {"type": "apiKey", "in": "cookie", "name": "asci_session"}},
        "responses": {name: error | {"description": text} for name, text in STANDARD_RESPONSES.items()},
        "schemas": {"Error": ERROR_SCHEMA},
    }


def path_parameter(name: str, schema: dict | None = None) -> dict:
    """A required path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}
