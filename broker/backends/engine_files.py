"""The Docker engine's file channel: a POSIX shell helper run by ``docker exec`` as the session's own
user decides, the engine's archive API moves the bytes.

Every check runs inside the desktop as the container's configured ``uid:gid`` (refused when that is
root): the helper resolves the path with ``realpath``, refuses one whose real path leaves its root
(``..`` via symlinks, links to ``/etc``...) before touching anything, checks that the user may read
the file (downloads) or write in the folder (uploads), and makes missing folders with the umask of
the desktop's own programs (read from its entrypoint's ``/proc/<pid>/status``).

The bytes go through the archive API (``get_archive``/``put_archive``, what ``docker cp`` uses), which
moves them several times faster than an exec's stdin/stdout here (``docs/benchmarks.md``), streamed
both ways (memory stays flat):

* upload: a one-member tar stream (header, body, padding) into a hidden temporary file of the checked
  real folder; its header carries the session's uid, gid and ``0666 & ~umask``, which the engine
  applies (it extracts as root: the ownership of the result is the user's, as if the user had written
  it). The helper then checks it (a regular file owned by the user, of the announced size) and links
  it (no overwrite: an existing file stays) or renames it (``overwrite``) into place as the user; on
  any failure it is removed. A file appears whole or not at all. ``/data`` (read only) is never written.
* download: the engine's tar of the checked real path, its one member streamed on as it arrives.
* listings, folder archives (``tar`` run as the user: unreadable files are left out), deletions: the
  helper alone.

What the engine does as root is bounded by the checks just made as the user; a desktop user who swaps a
checked folder for a symlink between the check and the transfer reaches only their own container's
root file system (the engine resolves paths within it and refuses read-only mounts such as ``/data``).
Only coreutils, findutils, tar and sed are needed in the image, which every desktop base image has.
"""

from __future__ import annotations

import logging
import secrets
import tarfile
import time
from typing import BinaryIO, Callable, Iterator

from broker.errors import BadRequest, NotFound
from broker.file_channel import (DATA, HOME, AlreadyExists, Download, Entry, FileChannel, IsAFolder, PathRefused,
                                 TransferFailed, check_root)

_LOG = logging.getLogger(__name__)
CHUNK = 1 << 20

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
  where)
    resolve
    [ -d "$t" ] && fail 5 "a folder: download it as an archive"
    [ -f "$t" ] || fail 2 "not a regular file"
    [ -r "$t" ] || fail 7 "permission denied"
    printf '%s\0' "$t" ;;
  tar)
    resolve
    [ -d "$t" ] || fail 5 "not a folder"
    exec tar -C "$(dirname -- "$t")" -cf - -- "$(basename -- "$t")" ;;
  prepare|commit|discard)
    [ "$root" = home ] || fail 2 "only the home is written"
    t=$(realpath -m -- "$base/$rel" 2>/dev/null) || fail 2 "not a path"
    inside "$t" && [ "$t" != "$base" ] || fail 2 "the path leads out of the $root folder"
    dir=${t%/*} size=$4 overwrite=$5 tmp="${t%/*}/${6:-}"
    case $op in
      discard) rm -f -- "$tmp"; exit 0 ;;
    esac
    [ -d "$t" ] && fail 5 "a folder is there"
    [ -e "$t" ] && [ "$overwrite" != 1 ] && fail 4 "a file is there (overwrite=1 replaces it)"
    if [ "$op" = prepare ]; then
      if ! mkdir -p -- "$dir" 2>/dev/null; then
        p=$dir
        while [ "$p" != "$base" ]; do
          [ -e "$p" ] && [ ! -d "$p" ] && fail 4 "a file is in the way: ${p#"$base"/}"
          p=${p%/*}
        done
        fail 7 "cannot make the folder"
      fi
      [ -w "$dir" ] && [ -x "$dir" ] || fail 7 "cannot write in the folder (permission denied)"
      printf '%s\0%s\0%s\0%s\0' "$dir" "$(umask)" "$(id -u)" "$(id -g)"
      exit 0
    fi
    trap 'rm -f -- "$tmp"' EXIT
    [ -f "$tmp" ] && [ ! -L "$tmp" ] && [ -O "$tmp" ] || fail 7 "the upload's temporary file is missing"
    got=$(stat -c %s -- "$tmp")
    [ "$got" = "$size" ] || fail 6 "the upload was cut short: $got of $size bytes arrived"
    if [ "$overwrite" = 1 ]; then
      mv -f -- "$tmp" "$t" 2>/dev/null || fail 7 "cannot replace the file"
    else
      if ! ln -- "$tmp" "$t" 2>/dev/null; then
        [ -e "$t" ] && fail 4 "a file is there (overwrite=1 replaces it)"
        fail 7 "cannot write the file"
      fi
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
    return TransferFailed(where if text else f"{where}: the desktop's helper failed (exit {code})")


def _closing(stream) -> None:
    close = getattr(stream, "close", None)
    if close:
        close()


def _take(chunks: Iterator[bytes], buffer: bytes, count: int) -> bytes:
    while len(buffer) < count:
        chunk = next(chunks, None)
        if chunk is None:
            raise TransferFailed("the engine's archive ended early")
        buffer += chunk
    return buffer


def _first_member(chunks: Iterator[bytes], path: str) -> tuple[int, bytes]:
    """The size of the tar stream's first regular file and the bytes after its header (pax and GNU
    long-name headers before it are skipped)."""
    buffer = b""
    for _ in range(8):
        buffer = _take(chunks, buffer, tarfile.BLOCKSIZE)
        try:
            header = tarfile.TarInfo.frombuf(buffer[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
        except tarfile.TarError as exc:
            raise TransferFailed(f"{path}: the engine's archive is unreadable ({exc})") from None
        buffer = buffer[tarfile.BLOCKSIZE:]
        if header.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            skip = header.size + (-header.size) % tarfile.BLOCKSIZE
            buffer = _take(chunks, buffer, skip)[skip:]
            continue
        if header.type not in tarfile.REGULAR_TYPES:
            raise TransferFailed(f"{path}: the engine did not give a regular file")
        return header.size, buffer
    raise TransferFailed(f"{path}: the engine's archive has no file")


def _member_bytes(chunks: Iterator[bytes], first: bytes, size: int, stream) -> Iterator[bytes]:
    """``size`` bytes: ``first``, then the chunks, cut where the member ends."""
    left = size
    try:
        chunk = first
        while left:
            if chunk:
                piece = chunk[:left] if len(chunk) > left else chunk
                left -= len(piece)
                yield piece
            if left:
                chunk = next(chunks, None)
                if chunk is None:
                    raise TransferFailed(f"the engine's archive ended {left} bytes early")
    finally:
        _closing(stream)


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

    def _create(self, args: list[str]) -> str:
        user, environment = self._who()
        command = ["sh", "-c", HELPER, "asci-files", *args]
        created = self.call("exec", self.api.exec_create, self.container, command, stdout=True, stderr=True,
                            user=user, environment=environment, workdir="/")
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

    # ------------------------------------------------------------ the contract
    def stat(self, root: str, path: str) -> Entry:
        line = self._run(["stat", check_root(root), path]).decode(errors="replace").split()
        kind, size, mtime = line[0], int(line[1]), float(line[2])
        return Entry(path.rpartition("/")[2], kind, size, mtime)

    def listing(self, root: str, path: str) -> list[Entry]:
        fields = self._run(["list", check_root(root), path]).split(b"\0")
        entries = []
        for index in range(0, len(fields) - 3, 4):
            name, kind, size, mtime = fields[index:index + 4]
            entries.append(Entry(name.decode(errors="replace"), _TYPES.get(kind.decode(), "other"), int(size),
                                 round(float(mtime), 3)))
        return sorted(entries, key=lambda entry: entry.name)

    def read(self, root: str, path: str) -> Download:
        """Checked as the user (its real path, a readable regular file), then the engine's tar of that one
        file, whose member's bytes are passed on as they arrive (the header parsed, nothing copied whole)."""
        real = self._run(["where", check_root(root), path]).split(b"\0")[0].decode(errors="surrogateescape")
        stream, _stat = self.call("get archive", self.api.get_archive, self.container, real, chunk_size=CHUNK)
        chunks = iter(stream)
        try:
            size, rest = _first_member(chunks, path)
        except BaseException:
            _closing(stream)
            raise
        return Download(size, _member_bytes(chunks, rest, size, stream))

    def archive(self, root: str, path: str) -> Iterator[bytes]:
        entry = self.stat(root, path)
        if entry.type != "dir":
            raise BadRequest(f"{path or '/'}: not a folder (only folders are archived)")
        exec_id = self._create(["tar", root, path])
        frames = self.call("exec", self.api.exec_start, exec_id, stream=True, demux=True)

        def chunks() -> Iterator[bytes]:
            errors = b""
            try:
                for stdout, stderr in frames:
                    errors += (stderr or b"")[:4000]
                    if stdout:
                        yield stdout
            finally:
                _closing(frames)
            if errors:
                _LOG.warning("archive of %s: %s", path, errors.decode(errors="replace")[-500:])

        return chunks()

    def write(self, path: str, source: BinaryIO, size: int, overwrite: bool) -> Entry:
        flag = "1" if overwrite else "0"
        folder, mask, uid, gid = self._run(["prepare", HOME, path, str(size), flag]).split(b"\0")[:4]
        temporary = f".asci-upload.{secrets.token_hex(8)}"
        header = tarfile.TarInfo(temporary)
        header.size, header.mtime = size, time.time()
        header.mode = 0o666 & ~int(mask or b"022", 8)
        header.uid, header.gid = int(uid), int(gid)
        sent, short = [0], []

        def body() -> Iterator[bytes]:
            yield header.tobuf(format=tarfile.PAX_FORMAT)
            while sent[0] < size:
                chunk = source.read(min(CHUNK, size - sent[0]))
                if not chunk:
                    short.append(True)
                    raise TransferFailed(f"{path}: the upload was cut short: {sent[0]} of {size} bytes arrived")
                sent[0] += len(chunk)
                yield chunk
            yield b"\0" * ((-size) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)

        try:
            self.call("put archive", self.api.put_archive, self.container, folder.decode(errors="surrogateescape"),
                      body())
            line = self._run(["commit", HOME, path, str(size), flag, temporary]).decode(errors="replace").split()
        except BaseException:
            try:
                self._run(["discard", HOME, path, str(size), flag, temporary])
            except Exception:  # noqa: BLE001 - the first error is the one to report
                _LOG.warning("could not remove %s/%s after a failed upload", folder, temporary)
            if short:
                raise BadRequest(f"{path}: the upload was cut short: {sent[0]} of {size} bytes arrived") from None
            raise
        return Entry(path.rpartition("/")[2], line[0], int(line[1]), float(line[2]))

    def delete(self, path: str) -> None:
        self._run(["delete", HOME, path])


__all__ = ["EngineFileChannel", "HELPER", "DATA", "HOME"]
