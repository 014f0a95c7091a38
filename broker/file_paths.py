"""Checking a path a caller names inside a desktop's home (or ``/data``) before anything is touched.

A path is relative to its root, written with ``/``, as the URL gave it once decoded. Refused (a
:class:`BadPath`, 400): absolute paths, ``..`` and ``.`` components, empty components (``a//b``), NUL
and other control characters, backslashes that would read as separators elsewhere, components
that decode once more to something refused (``%2e%2e``, ``%2f``: a second decoding layer), over-long
names. What is left can only name something under the root by its spelling; symlinks are followed
inside the desktop, where the file channel refuses a real path outside the root
(``broker.file_channel``).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

from broker.errors import BadRequest

MAX_COMPONENT = 255  # bytes, as Linux file systems count
MAX_PATH = 4000


class BadPath(BadRequest):
    """The path could leave its root, or is not a path at all."""


def _refuse(raw: str, why: str) -> BadPath:
    shown = raw if len(raw) <= 80 else raw[:80] + "..."
    return BadPath(f"path {shown!r}: {why}")


def _check_component(raw: str, part: str) -> None:
    if part in ("", ".", ".."):
        raise _refuse(raw, "empty, '.' and '..' components are not allowed" if part else
                      "empty components ('//') are not allowed")
    if "\\" in part:
        raise _refuse(raw, "backslashes are not allowed")
    if any(unicodedata.category(ch) == "Cc" for ch in part):
        raise _refuse(raw, "control characters (NUL, newline...) are not allowed")
    if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT:
        raise _refuse(raw, f"a name is longer than {MAX_COMPONENT} bytes")
    decoded = part
    for _ in range(3):  # %252e%252e: every further decoding layer is checked too
        again = unquote(decoded)
        if again == decoded:
            break
        if again.strip() in (".", "..") or any(ch in again for ch in "/\\\x00"):
            raise _refuse(raw, "an encoded '.', '..', '/' or NUL is not allowed")
        decoded = again


def clean_path(raw: str, *, folder: bool = False) -> str:
    """``raw`` checked and without a trailing ``/`` ("" is the root); :class:`BadPath` when it is refused.

    ``folder`` allows the root itself ("" or "/") and one trailing slash.
    """
    if not isinstance(raw, str):
        raise BadPath("a path is text")
    if "\x00" in raw:
        raise _refuse(raw.replace("\x00", "\\0"), "NUL is not allowed")
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise _refuse(raw, f"longer than {MAX_PATH} bytes")
    if raw.startswith("/") and not (folder and raw == "/"):
        raise _refuse(raw, "absolute paths are not allowed: paths are relative to the home")
    if raw.startswith("~"):
        raise _refuse(raw, "'~' is not expanded: paths are relative to the home already")
    path = raw[:-1] if folder and raw.endswith("/") else raw
    if not path:
        if folder:
            return ""
        raise _refuse(raw, "no file named")
    for part in path.split("/"):
        _check_component(raw, part)
    return path


def parent_and_name(path: str) -> tuple[str, str]:
    """A clean path split into its folder ("" for the root) and its last name."""
    folder, _, name = path.rpartition("/")
    return folder, name


__all__ = ["BadPath", "clean_path", "parent_and_name", "MAX_COMPONENT", "MAX_PATH"]
