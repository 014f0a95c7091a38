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


def integer_range_regex(low: int, high: int) -> str:
    """A regular expression (a non-capturing group) matching exactly the decimal integers
    ``low``..``high`` written without leading zeros, so a schema's string pattern can carry a range."""
    if not 0 <= low <= high:
        raise ValueError(f"not a range: {low}..{high}")

    def same_length(a: str, b: str) -> list[str]:
        if not a:
            return [""]
        if a[0] == b[0]:
            return [a[0] + rest for rest in same_length(a[1:], b[1:])]
        width = len(a) - 1
        low_full, high_full = a[1:] == "0" * width, b[1:] == "9" * width
        parts = [] if low_full else [a[0] + rest for rest in same_length(a[1:], "9" * width)]
        first, last = int(a[0]) + (not low_full), int(b[0]) - (not high_full)
        if first <= last:
            parts.append((f"[{first}-{last}]" if first < last else str(first)) + "[0-9]" * width)
        if not high_full:
            parts += [b[0] + rest for rest in same_length("0" * width, b[1:])]
        return parts

    alternatives = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        end = min(high, 10 ** digits - 1)
        if start <= end:
            alternatives += same_length(str(start), str(end))
    return "(?:" + "|".join(alternatives) + ")"
