"""The file channel: how the broker reads and writes files inside a running desktop, one per node kind.

A backend hands out a channel for a session's container (``Backend.file_channel``); the engine's
(``broker.backends.engine_files``) runs a small POSIX shell helper with ``docker exec`` as the
session's own uid, so the local engine, TLS daemons and Swarm (the task's container, on its node's
engine) all work the same way and nothing is read or written through the platform's filesystem. A
node agent would implement the same five methods over its own connection.

Paths given to a channel are already checked by ``broker.file_paths`` (relative, no ``..``, no NUL);
the channel still resolves them inside the desktop and refuses anything whose real path (symlinks
followed) leaves its root, touching nothing. Roots are ``home`` (the user's home, read and write) and
``data`` (the experiment's data at ``/data``, read only).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from broker.errors import BadRequest, BrokerError, Conflict, NotFound

HOME, DATA = "home", "data"
ROOTS = (HOME, DATA)


@dataclass(frozen=True)
class Entry:
    """One thing in a folder: ``type`` is file, dir, link or other; ``mtime`` seconds since the epoch."""

    name: str
    type: str
    size: int
    mtime: float

    def as_dict(self) -> dict:
        """The JSON shape."""
        return {"name": self.name, "type": self.type, "size": self.size, "mtime": self.mtime}


@dataclass
class Download:
    """A file being read: its size (for ``Content-Length``) and its bytes, a chunk at a time."""

    size: int
    chunks: Iterator[bytes]

    def close(self) -> None:
        """Stop reading (the helper inside the desktop ends)."""
        close = getattr(self.chunks, "close", None)
        if close:
            close()


class PathRefused(BadRequest):
    """The path leaves its root (a symlink pointing out), or names something of the wrong kind."""


class IsAFolder(Conflict):
    """A file operation on a folder."""


class AlreadyExists(Conflict):
    """An upload onto an existing file without ``overwrite``."""


class TransferFailed(BrokerError):
    """The desktop's side of a transfer failed (disk full, permission denied, the upload was cut short)."""

    http_status = 502


class FileChannel(abc.ABC):
    """Files of one running desktop, as its user."""

    @abc.abstractmethod
    def stat(self, root: str, path: str) -> Entry:
        """What ``path`` is (symlinks followed, staying inside ``root``); NotFound when nothing is there."""

    @abc.abstractmethod
    def listing(self, root: str, path: str) -> list[Entry]:
        """The entries of the folder ``path`` ("" is the root itself), sorted by name."""

    @abc.abstractmethod
    def read(self, root: str, path: str) -> Download:
        """A regular file's size and bytes (IsAFolder for a folder)."""

    @abc.abstractmethod
    def archive(self, root: str, path: str) -> Iterator[bytes]:
        """The folder ``path`` as a tar stream whose top entry is the folder's name (symlinks stored as links)."""

    @abc.abstractmethod
    def write(self, path: str, source: BinaryIO, size: int, overwrite: bool) -> Entry:
        """Write exactly ``size`` bytes of ``source`` to ``path`` in the home (folders made as needed, the
        desktop user's umask); the file appears whole or not at all. AlreadyExists unless ``overwrite``."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove the file (or symlink) ``path`` in the home; IsAFolder for a folder."""


def check_root(root: str) -> str:
    """``root`` when it is one of ROOTS."""
    if root not in ROOTS:
        raise NotFound(f"no file root {root!r}")
    return root


__all__ = ["Entry", "Download", "FileChannel", "PathRefused", "IsAFolder", "AlreadyExists", "TransferFailed",
           "HOME", "DATA", "ROOTS", "check_root"]
