"""The node agent's wire protocol, shared by the agent and the platform's client.

Mutual TLS over TCP; on each connection the client sends one request, a JSON object on one line
(``{"op": ..., ...}``, at most :data:`MAX_LINE` bytes), and the agent answers one JSON line:
``{"ok": true, ...}`` or ``{"ok": false, "kind": KIND, "error": "..."}``. After a successful
``relay`` answer the connection carries the session's VNC bytes in both directions until either
side closes it.

Operations (arguments → answer):

``hello``                                   → ``name``, ``run_dir``, ``sessions`` (folder names held)
``prepare`` key uid gid password view_password hostname → ``path`` (the folder on the node)
``ready`` key uid container_id              → ``ready`` (bool); ``kind`` foreign when another server answers
``remove`` key                              → ``removed`` (bool)
``sweep`` instance keep[]                   → ``removed`` (names)
``home`` root user uid gid                  → ``path`` (made with the user's uid, 0700, when absent)
``data`` path                               → ``exists`` (bool: a folder there)
``relay`` ticket                            → then bytes (see ``broker.tickets``)

Kinds of refusal: ``bad`` (malformed request), ``refused`` (ticket or certificate), ``foreign`` (the
session's socket is served by something else), ``missing`` (no such session folder), ``failed``.
"""

from __future__ import annotations

import json

MAX_LINE = 64 * 1024
KINDS = ("bad", "refused", "foreign", "missing", "failed")


class ProtocolError(Exception):
    """A line that is not one JSON object, or is too long."""


def encode(message: dict) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def read_line(sock) -> dict:
    """Read one line (byte by byte up to the newline: nothing after it is consumed) and decode it."""
    data = bytearray()
    while True:
        chunk = sock.recv(1)
        if not chunk:
            raise ProtocolError("the connection closed before a full line")
        if chunk == b"\n":
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ProtocolError("line too long")
    return decode(bytes(data))


def decode(line: bytes) -> dict:
    """One protocol line (its newline optional) as the JSON object it must be."""
    if len(line) > MAX_LINE + 1:
        raise ProtocolError("line too long")
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError("not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message
