"""Per-session folders on a node: where a desktop's VNC socket and password file live, and the proof
that the server answering on that socket is the session's own desktop.

Every desktop runs in a network namespace of its own (no TCP port on the node at all): its Xvnc
listens only on a Unix socket in a folder the platform made for that session and bind-mounts into
the container. The platform (broker, smoke gate, websockify) runs as root beside the nodes' engines
and shares their filesystem, so it reaches the socket by path; no other desktop has the folder.

Host layout (``settings.run_dir``; the key is ``<broker instance>-s<session id>`` or ``probe-…``)::

    <run_dir>/                      root 0700
      <key>/                        root 0700
        vnc/     -> /run/asci/vnc     session uid 0700 until the socket appears; then root 0700 ("locked")
          vnc.sock                    made by Xvnc as the session uid (0600); then root 0600
        secret/  -> /run/asci/secret  (read-only) session uid 0500
          passwd                      session uid 0400: ``vncpasswd -f`` format, full + view-only password
        hosts    -> /etc/hosts        (read-only) root 0444: localhost and the desktop's host name, for a
                                      desktop without a Docker network (Docker writes none then)

The password never enters the container's environment. Locking closes the one window in which a
desktop could swap its socket for something else (a symlink to another session's socket, which
root would follow): once ``vnc/`` belongs to root, nothing in the desktop can change what is
there. ``prove`` then connects and reads ``SO_PEERCRED``: the listening process must run as the
session's uid inside the session's own container (``/proc/<pid>/cgroup``), and greet with RFB.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from asci import rfb
from broker.errors import BackendError, ForeignServer, NotListening

CONTAINER_VNC_DIR = "/run/asci/vnc"
CONTAINER_SOCKET = f"{CONTAINER_VNC_DIR}/vnc.sock"
CONTAINER_SECRET_DIR = "/run/asci/secret"
CONTAINER_PASSWD = f"{CONTAINER_SECRET_DIR}/passwd"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
SOCKET_NAME = "vnc.sock"
_CONTAINER_IN_CGROUP = re.compile(r"(?:/docker/|docker-)([0-9a-f]{64})")


@dataclass(frozen=True)
class SessionDir:
    """The host folder of one desktop session."""

    path: Path

    @property
    def vnc(self) -> Path:
        return self.path / "vnc"

    @property
    def secret(self) -> Path:
        return self.path / "secret"

    @property
    def socket(self) -> Path:
        return self.vnc / SOCKET_NAME

    @property
    def hosts(self) -> Path:
        return self.path / "hosts"


def hostname_for(container_name: str) -> str:
    """A desktop's host name: its container name (unique on the node), cut to what a host name may be."""
    return re.sub(r"[^A-Za-z0-9-]", "-", container_name)[:63].strip("-") or "desktop"


def session_key(instance: str, session_id: int) -> str:
    """The folder name of a session of broker ``instance``."""
    return f"{instance}-s{int(session_id)}"


def session_dir(run_dir: Path, key: str) -> SessionDir:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}", key):
        raise BackendError(f"unsafe session folder name {key!r}")
    return SessionDir(Path(run_dir) / key)


def _private_root(run_dir: Path) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(run_dir)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise BackendError(f"{run_dir} (session_run_dir) must be a folder owned by the platform's user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(run_dir, 0o700)


def prepare(run_dir: Path, key: str, uid: int, gid: int, password: str, view_password: str,
            hostname: str = "localhost") -> SessionDir:
    """Make the session's folders, password file and hosts file (a stale folder of the same key is replaced)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", hostname):
        raise BackendError(f"unsafe host name {hostname!r}")
    folder = session_dir(run_dir, key)
    try:
        _private_root(run_dir)
        if os.path.lexists(folder.path):
            remove(folder)
        folder.path.mkdir(mode=0o700)
        folder.vnc.mkdir(mode=0o700)
        folder.secret.mkdir(mode=0o700)
        passwd = folder.secret / "passwd"
        fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        with os.fdopen(fd, "wb") as handle:
            handle.write(rfb.vncpasswd_file(password, view_password))
        os.chown(passwd, uid, gid)
        os.chown(folder.secret, uid, gid)
        os.chmod(folder.secret, 0o500)
        os.chown(folder.vnc, uid, gid)
        folder.hosts.write_text(HOSTS.format(hostname=hostname))
        os.chmod(folder.hosts, 0o444)
    except PermissionError as exc:
        raise BackendError(f"cannot prepare the session folder {folder.path}: {exc} (the platform must run as "
                           "root to hand the folder to the session's uid)") from None
    except OSError as exc:
        raise BackendError(f"cannot prepare the session folder {folder.path}: {exc}") from None
    return folder


def folder_of_socket(socket_path: str | os.PathLike) -> SessionDir | None:
    """The session folder whose socket is ``socket_path`` (``<folder>/vnc/vnc.sock``); None for any other path."""
    path = Path(socket_path)
    if path.name != SOCKET_NAME or path.parent.name != "vnc" or not path.is_absolute():
        return None
    return session_dir(path.parent.parent.parent, path.parent.parent.name)


def rewrite_password(folder: SessionDir, password: str, view_password: str) -> None:
    """Replace the session's password file (full + view-only) in one step, keeping its owner and mode.

    TigerVNC reads ``-PasswordFile`` at every authentication, so the next connection needs the new
    password while those already open go on. The new file is written beside the old one and renamed
    over it (the desktop sees the folder read-only and never a half-written file)."""
    passwd = folder.secret / "passwd"
    try:
        info = os.lstat(passwd)
        if not stat.S_ISREG(info.st_mode):
            raise BackendError(f"{passwd} is not a regular file")
        fresh = folder.secret / ".passwd.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh)
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        with os.fdopen(fd, "wb") as handle:
            handle.write(rfb.vncpasswd_file(password, view_password))
            os.fchown(handle.fileno(), info.st_uid, info.st_gid)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(fresh, passwd)
    except OSError as exc:
        raise BackendError(f"cannot replace the session's password file {passwd}: {exc}") from None


def is_locked(folder: SessionDir) -> bool:
    """True once ``vnc/`` belongs to root and nobody else may write or look into it."""
    try:
        info = os.lstat(folder.vnc)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o077


def lock(folder: SessionDir, uid: int) -> None:
    """Take ``vnc/`` and the socket from the session; the socket must be the one its Xvnc made."""
    os.chown(folder.vnc, 0, 0, follow_symlinks=False)
    os.chmod(folder.vnc, 0o700)
    entries = sorted(os.listdir(folder.vnc))
    if entries != [SOCKET_NAME]:
        raise ForeignServer(f"the desktop's socket folder holds {entries[:5]}, not just {SOCKET_NAME}")
    info = os.lstat(folder.socket)
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else f"mode {info.st_mode:o}"
        raise ForeignServer(f"{folder.socket} is not a socket of the session's uid {uid} ({kind}, uid {info.st_uid})")
    os.chown(folder.socket, 0, 0, follow_symlinks=False)
    os.chmod(folder.socket, 0o600)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a connected Unix socket (0 pid: not visible)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def container_of(pid: int) -> str | None:
    """The Docker container id ``pid`` runs in, read from ``/proc/<pid>/cgroup`` (None: not a container)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    match = _CONTAINER_IN_CGROUP.search(text)
    return match.group(1) if match else None


def prove(folder: SessionDir, uid: int, container_id: str, timeout: float = 3.0) -> int:
    """Raise :class:`ForeignServer` unless the socket is served, with an RFB greeting, by a process of
    ``uid`` in container ``container_id``; returns that process's pid.

    A platform that runs in a pid namespace of its own (a container without the host's pid namespace)
    sees the peer's pid as 0 and cannot read its cgroup: then the uid and the lock (only the session's
    container could have made a socket in its folder) are the proof, and the pid returned is 0."""
    try:
        sock = rfb.connect(folder.socket, timeout)
    except ConnectionRefusedError as exc:
        raise NotListening(f"the desktop's VNC socket {folder.socket} does not answer: {exc}") from None
    except OSError as exc:
        raise BackendError(f"the desktop's VNC socket {folder.socket} does not answer: {exc}") from None
    with sock:
        pid, peer_uid, _gid = peer_credentials(sock)
        owner = container_of(pid) if pid > 0 else None
        if peer_uid != uid or (pid > 0 and (not container_id or owner != container_id)):
            raise ForeignServer(f"{folder.socket} is served by pid {pid} (uid {peer_uid}, container "
                                f"{(owner or 'none')[:12]}), not by the session's desktop "
                                f"(uid {uid}, container {container_id[:12] or 'unknown'})")
        try:
            greeting = sock.recv(12)
        except OSError as exc:
            raise ForeignServer(f"{folder.socket} did not greet: {exc}") from None
    if not greeting.startswith(b"RFB "):
        raise ForeignServer(f"{folder.socket} does not speak RFB (greeting {greeting[:12]!r})")
    return pid


def ready(folder: SessionDir, uid: int, container_id) -> bool:
    """One readiness step: False while Xvnc has not finished making its socket (or does not accept on it
    yet); then lock, prove, True.

    TigerVNC makes the socket in three steps: ``bind`` (under umask 0777: mode 0000), ``chmod`` to
    ``-rfbunixmode``, ``listen``. The folder is locked only after the chmod (Xvnc, no longer the
    socket's owner, would fail it and exit), and a refused connection before ``listen`` is a step to
    wait. ``container_id`` is a callable giving the session's container id (asked only once the socket
    is there). Raises :class:`ForeignServer` when anything but the session's own desktop answers.
    """
    if not is_locked(folder):
        try:
            info = os.lstat(folder.socket)
        except FileNotFoundError:
            return False
        if stat.S_ISSOCK(info.st_mode) and not stat.S_IMODE(info.st_mode):
            return False  # bound, not yet given its mode: Xvnc chmods it next
        lock(folder, uid)
    try:
        prove(folder, uid, container_id())
    except NotListening:  # Xvnc made the socket (bind) but does not accept yet (listen): the next step
        return False
    return True


def checked_socket(path: str | os.PathLike) -> str | None:
    """``path`` when it is a locked session socket (a socket owned by root in a root-only folder); else None.

    What websockify opens: never a symlink, never a socket the desktop could still replace.
    """
    path = os.fspath(path)
    try:
        folder = os.lstat(os.path.dirname(path))
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(folder.st_mode) or folder.st_uid != 0 or folder.st_mode & 0o077:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        return None
    return path


def remove(folder: SessionDir) -> None:
    """Delete the session's folder (symlinks inside are removed, never followed)."""
    shutil.rmtree(folder.path, ignore_errors=True)
    if os.path.lexists(folder.path):
        try:
            os.unlink(folder.path)  # a symlink or file where the folder should be
        except OSError:
            pass


def remove_for_socket(socket_path: str | os.PathLike) -> None:
    """Delete the session folder whose socket is ``socket_path`` (``<folder>/vnc/vnc.sock``; anything else is left)."""
    path = Path(socket_path)
    if path.name == SOCKET_NAME and path.parent.name == "vnc" and path.is_absolute():
        remove(session_dir(path.parent.parent.parent, path.parent.parent.name))


def sweep(run_dir: Path, instance: str, keep: set[str]) -> list[str]:
    """Remove the session folders of broker ``instance`` under ``run_dir`` not named in ``keep``; their names."""
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return []
    mine = re.compile(rf"{re.escape(instance)}-s\d+")
    removed = []
    for name in sorted(names):
        if mine.fullmatch(name) and name not in keep:
            remove(SessionDir(Path(run_dir) / name))
            removed.append(name)
    return removed
