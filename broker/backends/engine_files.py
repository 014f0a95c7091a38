"""The Docker engine's file channel: ``docker exec`` of a POSIX shell helper as the session's own user.

Why exec and not the engine's archive API (``get_archive``/``put_archive``, what ``docker cp`` uses):
the daemon extracts and reads those as root, keeps the uid/gid and mode of the tar headers (no
umask), and follows symlinks anywhere in the container's root file system; exec runs as the
container's configured ``uid:gid`` (checked: never root), with the umask of the desktop's own programs
(read from the entrypoint's ``/proc/<pid>/status``), so permissions inside the desktop decide
exactly as they do for the user's own programs, and ``/data`` stays read only.

The helper resolves every path with ``realpath`` inside the desktop and refuses one whose real path
leaves its root before touching anything. Uploads stream into a hidden temporary file next to the
target (``dd`` of exactly the announced size from the exec's stdin) that is linked (no overwrite) or
renamed (overwrite) into place only when every byte arrived: a file appears whole or not at all.
Downloads stream ``cat``'s output (multiplexed frames, read a frame at a time: memory stays flat).
Only coreutils, findutils, tar and sed are needed, which every desktop base image has.
"""

from __future__ import annotations

import logging
import time
from typing import BinaryIO, Callable, Iterator

from docker.utils.socket import frames_iter

from broker.errors import BadRequest, NotFound
from broker.file_channel import (DATA, HOME, AlreadyExists, Download, Entry, FileChannel, IsAFolder, PathRefused,
                                 TransferFailed, check_root)

_LOG = logging.getLogger(__name__)
CHUNK = 1 << 20
YIELD_BYTES = 256 << 10

HELPER = r'''
set -u
op=$1 root=$2 rel=$3
fail() { code=$1; shift; printf '%s\n' "$*" >&2; exit "$code"; }
# The umask of the desktop's own programs: its entrypoint's (PID 1's first child under the engine's init).
pid=1
case "$(cat /proc/1/comm 2>/dev/null)" in
  docker-init|tini|catatonit|dumb-init) for p in $(cat /proc/1/task/1/children 2>/dev/null); do pid=$p; break; done ;;
esac
mask=$(sed -n 's/^Umask:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)
[ -n "$mask" ] && umask "$mask"
case $root in
  home) top=${HOME:-} ;;
  data) top=/data ;;
  *) fail 2 "no such root" ;;
esac
[ -n "$top" ] || fail 3 "the desktop has no home folder"
base=$(realpath -e -- "$top" 2>/dev/null) || fail 3 "no $root folder in this desktop"
inside() { case $1 in "$base"|"$base"/*) return 0 ;; esac; return 1; }
resolve() {
  t=$(realpath -e -- "$base/$rel" 2>/dev/null) || fail 3 "no such file or folder"
  inside "$t" || fail 2 "the path leads out of the $root folder"
}
kind() { if [ -d "$1" ]; then echo dir; elif [ -f "$1" ]; then echo file; else echo other; fi; }
describe() { printf '%s %s %s\n' "$(kind "$1")" "$(stat -c '%s %Y' -- "$1")"; }
case $op in
  stat) resolve; describe "$t" ;;
  list)
    resolve
    [ -d "$t" ] || fail 5 "not a folder"
    [ -r "$t" ] && [ -x "$t" ] || fail 7 "permission denied"
    exec find "$t" -mindepth 1 -maxdepth 1 -printf '%f\0%y\0%s\0%T@\0' ;;
  get)
    resolve
    [ -d "$t" ] && fail 5 "a folder: download it as an archive"
    [ -f "$t" ] || fail 2 "not a regular file"
    [ -r "$t" ] || fail 7 "permission denied"
    printf '%s\n' "$(stat -c %s -- "$t")"
    exec cat -- "$t" ;;
  tar)
    resolve
    [ -d "$t" ] || fail 5 "not a folder"
    exec tar -C "$(dirname -- "$t")" -cf - -- "$(basename -- "$t")" ;;
  check|put)
    [ "$root" = home ] || fail 2 "only the home is written"
    t=$(realpath -m -- "$base/$rel" 2>/dev/null) || fail 2 "not a path"
    inside "$t" && [ "$t" != "$base" ] || fail 2 "the path leads out of the $root folder"
    [ -d "$t" ] && fail 5 "a folder is there"
    overwrite=$5
    [ -e "$t" ] && [ "$overwrite" != 1 ] && fail 4 "a file is there (overwrite=1 replaces it)"
    dir=${t%/*}
    [ "$op" = check ] && exit 0
    size=$4
    mkdir -p -- "$dir" 2>/dev/null || fail 7 "cannot make the folder"
    tmp="$dir/.asci-upload.$$"
    trap 'rm -f -- "$tmp"' EXIT
    (set -C; : >"$tmp") 2>/dev/null || fail 7 "cannot write in the folder (permission denied?)"
    dd of="$tmp" bs=1M count="$size" iflag=count_bytes,fullblock status=none 2>/dev/null || fail 7 "writing failed (disk full?)"
    got=$(stat -c %s -- "$tmp")
    [ "$got" = "$size" ] || fail 6 "the upload was cut short: $got of $size bytes arrived"
    if [ "$overwrite" = 1 ]; then
      mv -f -- "$tmp" "$t" 2>/dev/null || fail 7 "cannot replace the file"
    else
      ln -- "$tmp" "$t" 2>/dev/null || { [ -e "$t" ] && fail 4 "a file is there (overwrite=1 replaces it)"; fail 7 "cannot write the file"; }
    fi
    describe "$t" ;;
  delete)
    case $rel in */*) prel=${rel%/*} name=${rel##*/} ;; *) prel= name=$rel ;; esac
    p=$(realpath -e -- "$base/$prel" 2>/dev/null) || fail 3 "no such file"
    inside "$p" || fail 2 "the path leads out of the $root folder"
    t="$p/$name"
    [ -e "$t" ] || [ -L "$t" ] || fail 3 "no such file"
    [ -d "$t" ] && [ ! -L "$t" ] && fail 5 "a folder: only files are deleted"
    rm -f -- "$t" 2>/dev/null || fail 7 "cannot delete (permission denied?)"
    [ -e "$t" ] || [ -L "$t" ] && fail 7 "cannot delete" || exit 0 ;;
  *) fail 2 "unknown operation" ;;
esac
'''

_TYPES = {"f": "file", "d": "dir", "l": "link"}


def _error(code: int | None, message: str, path: str) -> Exception:
    text = message.strip().splitlines()[-1] if message.strip() else ""
    where = f"{path or '/'}: {text}" if text else (path or "/")
    if code == 2:
        return PathRefused(where)
    if code == 3:
        return NotFound(where)
    if code == 4:
        return AlreadyExists(where)
    if code == 5:
        return IsAFolder(where)
    if code == 6:
        return BadRequest(where)
    return TransferFailed(f"{where or 'the desktop'} (helper exit {code})" if not text else where)


def _send_all(sock, data) -> None:
    """Write to the exec's stdin: a TLS socket has ``sendall``; a unix socket comes as a read-only
    ``SocketIO`` whose socket is ``_sock`` (what docker-py's own attach examples write to)."""
    (sock.sendall if hasattr(sock, "sendall") else sock._sock.sendall)(data)


class EngineFileChannel(FileChannel):
    """Files of one session container through its engine (``api``: the node's ``docker.APIClient``).

    ``call(what, function, *args)`` maps the engine's errors to the broker's (NodeUnreachable...).
    """

    def __init__(self, api, container: str, call: Callable, exit_wait_s: float = 10.0) -> None:
        self.api = api
        self.container = container
        self.call = call
        self.exit_wait_s = exit_wait_s
        self._identity: tuple[str, dict[str, str]] | None = None

    # ------------------------------------------------------------ exec plumbing
    def _who(self) -> tuple[str, dict[str, str]]:
        """The container's ``uid:gid`` (never root) and its HOME."""
        if self._identity is None:
            info = self.call("inspect container", self.api.inspect_container, self.container)
            if not info.get("State", {}).get("Running"):
                raise NotFound("the desktop is not running")
            config = info.get("Config") or {}
            user = str(config.get("User") or "")
            uid = user.split(":", 1)[0]
            if not uid or uid in ("0", "root") or not uid.isdigit():
                raise TransferFailed("the desktop's container runs as root: files are not transferred as root")
            env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
            self._identity = (user, {"HOME": env.get("HOME", "")})
        return self._identity

    def _create(self, args: list[str], stdin: bool = False) -> str:
        user, environment = self._who()
        command = ["sh", "-c", HELPER, "asci-files", *args]
        created = self.call("exec", self.api.exec_create, self.container, command, stdout=True, stderr=True,
                            stdin=stdin, user=user, environment=environment, workdir="/")
        return created["Id"]

    def _exit_code(self, exec_id: str) -> int | None:
        deadline = time.monotonic() + self.exit_wait_s
        while True:
            info = self.call("inspect exec", self.api.exec_inspect, exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def _run(self, args: list[str]) -> bytes:
        """Run the helper to its end; its stdout, or the error its exit code names."""
        exec_id = self._create(args)
        out = self.call("exec", self.api.exec_start, exec_id, demux=True)
        stdout, stderr = out if isinstance(out, tuple) else (out, b"")
        code = self._exit_code(exec_id)
        if code != 0:
            raise _error(code, (stderr or b"").decode(errors="replace"), args[2])
        return stdout or b""

    def _stream(self, args: list[str]) -> tuple[str, Iterator[tuple[bytes | None, bytes | None]]]:
        exec_id = self._create(args)
        frames = self.call("exec", self.api.exec_start, exec_id, stream=True, demux=True)
        return exec_id, frames

    # ------------------------------------------------------------ the contract
    def stat(self, root: str, path: str) -> Entry:
        line = self._run(["stat", check_root(root), path]).decode(errors="replace").split()
        kind, size, mtime = line[0], int(line[1]), float(line[2])
        return Entry(path.rpartition("/")[2], kind, size, mtime)

    def listing(self, root: str, path: str) -> list[Entry]:
        raw = self._run(["list", check_root(root), path])
        fields = raw.split(b"\0")
        entries = []
        for index in range(0, len(fields) - 3, 4):
            name, kind, size, mtime = fields[index:index + 4]
            entries.append(Entry(name.decode(errors="surrogateescape").encode("utf-8", "replace").decode(),
                                 _TYPES.get(kind.decode(), "other"), int(size), round(float(mtime), 3)))
        return sorted(entries, key=lambda entry: entry.name)

    def read(self, root: str, path: str) -> Download:
        exec_id, frames = self._stream(["get", check_root(root), path])
        head, errors = b"", b""
        for stdout, stderr in frames:
            errors += stderr or b""
            head += stdout or b""
            if b"\n" in head:
                break
        if b"\n" not in head:
            raise _error(self._exit_code(exec_id), errors.decode(errors="replace"), path)
        first, _, rest = head.partition(b"\n")
        size = int(first)
        return Download(size, self._body(frames, rest, size, path))

    def _body(self, frames, first: bytes, size: int, path: str) -> Iterator[bytes]:
        """At most ``size`` bytes (a file that grew is cut at the size announced), in chunks of ~256 KiB."""
        sent, pending = 0, [first] if first else []
        pending_bytes = len(first)
        try:
            for stdout, _stderr in frames:
                if stdout:
                    pending.append(stdout)
                    pending_bytes += len(stdout)
                if pending_bytes >= YIELD_BYTES:
                    chunk = b"".join(pending)[:size - sent]
                    pending, pending_bytes = [], 0
                    sent += len(chunk)
                    yield chunk
                    if sent >= size:
                        return
            chunk = b"".join(pending)[:size - sent]
            sent += len(chunk)
            if chunk:
                yield chunk
            if sent < size:
                _LOG.warning("download of %s ended at %d of %d bytes (the file shrank)", path, sent, size)
        finally:
            close = getattr(frames, "close", None)
            if close:
                close()

    def archive(self, root: str, path: str) -> Iterator[bytes]:
        entry = self.stat(root, path)
        if entry.type != "dir":
            raise BadRequest(f"{path or '/'}: not a folder (only folders are archived)")
        exec_id, frames = self._stream(["tar", root, path])

        def chunks() -> Iterator[bytes]:
            errors = b""
            try:
                for stdout, stderr in frames:
                    errors += (stderr or b"")[:4000]
                    if stdout:
                        yield stdout
            finally:
                close = getattr(frames, "close", None)
                if close:
                    close()
            if errors:
                _LOG.warning("archive of %s: %s", path, errors.decode(errors="replace")[-500:])

        return chunks()

    def write(self, path: str, source: BinaryIO, size: int, overwrite: bool) -> Entry:
        flag = "1" if overwrite else "0"
        self._run(["check", HOME, path, str(size), flag])  # refused before a byte of the body is read
        exec_id = self._create(["put", HOME, path, str(size), flag], stdin=True)
        sock = self.call("exec", self.api.exec_start, exec_id, socket=True)
        disable = getattr(self.api, "_disable_socket_timeout", None)
        if disable:
            disable(sock)
        output, errors, failure = b"", b"", None
        try:
            left = size
            try:
                while left:
                    chunk = source.read(min(CHUNK, left))
                    if not chunk:
                        break
                    _send_all(sock, chunk)
                    left -= len(chunk)
            except Exception as exc:  # noqa: BLE001 - the helper ended early (its exit code says why), or the
                failure = exc        # request body ended before its Content-Length
            if left and failure is None:
                failure = TransferFailed(f"{path}: the upload was cut short: {size - left} of {size} bytes arrived")
            if not left:
                try:
                    for stream, data in frames_iter(sock, tty=False):
                        if stream == 1:
                            output += data
                        else:
                            errors += data
                except OSError:
                    pass
        finally:
            _close(sock)
        code = self._exit_code(exec_id)
        if code != 0:
            if code is None and isinstance(failure, TransferFailed):
                raise failure
            raise _error(code, errors.decode(errors="replace"), path)
        if failure is not None:
            raise failure if isinstance(failure, TransferFailed) else TransferFailed(f"{path}: {failure}")
        kind, got, mtime = output.decode(errors="replace").split()[:3]
        return Entry(path.rpartition("/")[2], kind, int(got), float(mtime))

    def delete(self, path: str) -> None:
        self._run(["delete", HOME, path])


def _close(sock) -> None:
    response = getattr(sock, "_response", None)
    try:
        if response is not None:
            response.close()
        sock.close()
    except (OSError, ValueError):
        pass


__all__ = ["EngineFileChannel", "HELPER", "DATA", "HOME"]
