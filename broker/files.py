"""Files in and out of a running desktop: who may, and through which channel.

The session's owner may list, download, upload and delete in the desktop's home and download from
its read-only ``/data``; a guest with a live share (``broker.shares``) may list and download, and
upload and delete too when the share gives ``control``. Anyone else gets 404, exactly as for a
session that does not exist. Paths are checked (``broker.file_paths``) before the desktop is
reached; the desktop's side goes through the file channel of the session's node
(``Backend.file_channel``: the engine's ``docker exec`` as the session's uid, or a node agent), never
through the platform's filesystem. Guests' uploads and deletions are written to the audit log in
the request's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci import audit
from asci.accounts import User
from broker.backends.base import Backend, NodeRef
from broker.errors import BrokerError, Conflict, Forbidden, NotFound
from broker.file_channel import DATA, HOME, Download, Entry, FileChannel, check_root
from broker.file_paths import clean_path
from broker.models import DesktopSession, SessionShare, SessionState, ShareMode


class UploadTooLarge(BrokerError):
    """An upload larger than ``files_max_upload_bytes``."""

    http_status = 413


class LengthRequired(BrokerError):
    """An upload without ``Content-Length`` (the size is announced, so a file arrives whole or not at all)."""

    http_status = 411


@dataclass(frozen=True)
class FileAccess:
    """A caller's way into one running desktop's files."""

    session_id: int
    actor: str
    share_id: int | None  # None: the owner
    may_write: bool
    channel: FileChannel

    @property
    def is_guest(self) -> bool:
        return self.share_id is not None


def _live_share(db: Session, desktop: DesktopSession, user: User) -> SessionShare | None:
    return db.scalar(select(SessionShare).where(SessionShare.session_id == desktop.id,
                                                SessionShare.guest_id == user.id,
                                                SessionShare.revoked_at.is_(None)).order_by(SessionShare.id.desc()))


def open_files(db: Session, backend: Backend, session_id: int, user: User, *, write: bool = False) -> FileAccess:
    """The caller's access to the files of running session ``session_id`` (NotFound when it is not theirs
    nor shared with them; Forbidden to write through a view-only share; Conflict while it is not running)."""
    desktop = db.get(DesktopSession, session_id)
    if desktop is None or not user.is_active:
        raise NotFound(f"no session {session_id}")
    share = None
    if desktop.user_id != user.id:
        share = _live_share(db, desktop, user)
        if share is None or desktop.state != SessionState.RUNNING:
            raise NotFound(f"no session {session_id}")
    may_write = share is None or share.mode == ShareMode.CONTROL
    if write and not may_write:
        raise Forbidden(f"session {session_id} is shared with you view only: files may be downloaded, not changed")
    if desktop.state != SessionState.RUNNING or desktop.node is None:
        raise Conflict(f"session {session_id} is {desktop.state}: files move only in and out of a running desktop")
    channel = backend.file_channel(NodeRef.of(desktop.node), dict(desktop.backend_state or {}))
    return FileAccess(desktop.id, user.username, share.id if share else None, may_write, channel)


def listing(access: FileAccess, root: str, raw_path: str) -> tuple[str, list[Entry]]:
    """The clean folder path and its entries."""
    path = clean_path(raw_path, folder=True)
    return path, access.channel.listing(check_root(root), path)


def stat(access: FileAccess, root: str, raw_path: str) -> tuple[str, Entry]:
    """The clean path and what is there."""
    path = clean_path(raw_path, folder=True)
    return path, access.channel.stat(check_root(root), path)


def download(access: FileAccess, root: str, path: str) -> Download:
    """A file's size and bytes (``path`` clean)."""
    return access.channel.read(check_root(root), path)


def archive(access: FileAccess, root: str, path: str) -> Iterator[bytes]:
    """A folder as a tar stream (``path`` clean)."""
    return access.channel.archive(check_root(root), path)


def upload(db: Session, access: FileAccess, raw_path: str, source: BinaryIO, size: int, overwrite: bool,
           max_bytes: int) -> tuple[str, Entry]:
    """Write ``size`` bytes of ``source`` to ``raw_path`` in the home; audited for a guest."""
    path = clean_path(raw_path)
    if size > max_bytes:
        raise UploadTooLarge(f"{size} bytes is more than the {max_bytes} an upload may be (files_max_upload_bytes)")
    if not access.may_write:
        raise Forbidden("view only")
    entry = access.channel.write(path, source, size, overwrite)
    if access.is_guest:
        audit.record(db, access.actor, "files.upload", f"session {access.session_id}", path=path, size=size,
                     overwrite=overwrite, share=access.share_id)
    return path, entry


def delete(db: Session, access: FileAccess, raw_path: str) -> str:
    """Remove the file ``raw_path`` in the home; audited for a guest."""
    path = clean_path(raw_path)
    if not access.may_write:
        raise Forbidden("view only")
    access.channel.delete(path)
    if access.is_guest:
        audit.record(db, access.actor, "files.delete", f"session {access.session_id}", path=path,
                     share=access.share_id)
    return path


__all__ = ["open_files", "listing", "stat", "download", "archive", "upload", "delete", "FileAccess",
           "UploadTooLarge", "LengthRequired", "HOME", "DATA"]
