"""What a build added to its base: listings of both images, their difference, and the added tree.

A listing is GNU ``find -printf`` output (type, mode, owner, size, mtime, ctime, link target, path;
NUL-separated fields, so any file name is read exactly). A container of the built image sees every
file of the base through the same lower layers, with the same ctime; a path the build touched was
copied up (or created) and has a new ctime. Comparing the two listings therefore gives exactly the
paths the build's layers hold, without reading the layers of the base (``docker save`` of a desktop
base costs half a minute here). Directories count as changed only when their type, mode or owner
changed: their times are not kept in our layers (see :mod:`.tarball`).
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

WHITEOUT = ".wh."
# What the engine puts into every container (bind mounts, pseudo file systems): never part of a layer.
# The working files of the reading containers (:mod:`.snapshot`) are never part of a layer either.
ENGINE_PATHS = frozenset({".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab", "proc", "sys",
                          "dev", "tmp/asci-listing", "tmp/asci-owners", "tmp/asci-paths", "tmp/asci-layer.tar",
                          "tmp/asci-tar.err"})
LISTING_FIELDS = "%y\\0%m\\0%U\\0%G\\0%s\\0%T@\\0%C@\\0%l\\0%p\\0"
# GNU find over the root file system, not descending into the engine's pseudo file systems.
LISTING_COMMAND = ("find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -printf '"
                   + LISTING_FIELDS + "'")


def norm(name: str) -> str:
    """A path as a tar member name: relative, without ``./``, leading or trailing slashes."""
    return posixpath.normpath("/" + name).lstrip("/")


def ancestors(path: str) -> Iterable[str]:
    """``a/b/c`` → ``a``, ``a/b`` (the directories above a path, top first)."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def is_engine_path(path: str) -> bool:
    return path in ENGINE_PATHS or path.split("/", 1)[0] in ("proc", "sys", "dev")


@dataclass(frozen=True)
class Stat:
    """One line of a listing."""

    type: str  # find's %y: f d l c b p s
    mode: int
    uid: int
    gid: int
    size: int
    mtime: str
    ctime: str
    link: str

    @property
    def is_dir(self) -> bool:
        return self.type == "d"

    def same_as(self, other: "Stat") -> bool:
        """Whether the build left this path as the base had it."""
        if self.is_dir and other.is_dir:
            return (self.mode, self.uid, self.gid) == (other.mode, other.uid, other.gid)
        return self == other


def parse_listing(data: bytes) -> dict[str, Stat]:
    """``path → Stat`` from the NUL-separated output of :data:`LISTING_COMMAND`."""
    fields = data.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) % 9:
        raise ValueError(f"listing of {len(fields)} fields is not a multiple of 9 (truncated output?)")
    result = {}
    for i in range(0, len(fields), 9):
        kind, mode, uid, gid, size, mtime, ctime, link, path = (f.decode("utf-8", "surrogateescape")
                                                                for f in fields[i:i + 9])
        path = norm(path)
        if path:
            result[path] = Stat(kind, int(mode, 8), int(uid), int(gid), int(size), mtime, ctime, link)
    return result


@dataclass
class Changes:
    """The difference between the base's and the built image's listings."""

    changed: list[str]  # added or changed paths (sorted)
    deleted: list[str]  # base paths gone, topmost only (sorted)


def diff_listings(base: dict[str, Stat], built: dict[str, Stat]) -> Changes:
    changed = sorted(p for p, st in built.items()
                     if not is_engine_path(p) and st.type != "s" and (p not in base or not st.same_as(base[p])))
    now_files = {p for p in changed if p in base and base[p].is_dir and not built[p].is_dir}
    gone = {p for p in base if p not in built and not is_engine_path(p)}
    deleted = sorted(p for p in gone if not any(a in gone or a in now_files for a in ancestors(p)))
    return Changes(changed, deleted)


@dataclass
class Entry:
    """One path of the added tree: its tar header and, for content, how to read it."""

    path: str
    info: tarfile.TarInfo
    opener: Callable[[], BinaryIO] | None = None

    @property
    def is_dir(self) -> bool:
        return self.info.isdir()


@dataclass
class Tree:
    """What the build added over its base: entries by path, whiteout markers, directory stats."""

    entries: dict[str, Entry] = field(default_factory=dict)
    whiteouts: dict[str, tarfile.TarInfo] = field(default_factory=dict)  # marker path -> header
    stats: dict[str, Stat] = field(default_factory=dict)  # the built image's listing (for ancestors)
    _open: list = field(default_factory=list)

    def close(self) -> None:
        for handle in self._open:
            handle.close()
        self._open.clear()

    def entry_or_dir(self, path: str) -> Entry:
        """The tree's entry, or a directory header for an ancestor the build did not change
        (mode and owner from the built image's listing)."""
        entry = self.entries.get(path)
        if entry is not None:
            return entry
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        stat = self.stats.get(path)
        info.mode, info.uid, info.gid = (stat.mode, stat.uid, stat.gid) if stat else (0o755, 0, 0)
        return Entry(path, info)


def whiteout_header(path: str) -> tuple[str, tarfile.TarInfo]:
    """The marker that deletes ``path`` from the layers below (``dir/.wh.name``)."""
    marker = posixpath.join(posixpath.dirname(path), WHITEOUT + posixpath.basename(path))
    info = tarfile.TarInfo(marker)
    info.type, info.mode = tarfile.REGTYPE, 0o644
    return marker, info


def load_tree(tar_path: Path, changes: Changes, built: dict[str, Stat]) -> Tree:
    """The added tree from the tar of the changed paths (GNU tar) and the deleted paths."""
    tree = Tree(stats=built)
    handle = tarfile.open(tar_path, "r:")
    tree._open.append(handle)
    for member in handle.getmembers():
        path = norm(member.name)
        if not path:
            continue
        if member.islnk():
            member.linkname = norm(member.linkname)
        opener = None
        if member.isreg() or member.islnk():
            opener = (lambda m=member: handle.extractfile(m))
        tree.entries[path] = Entry(path, member, opener)
    missing = [p for p in changes.changed if p not in tree.entries]
    if missing:
        raise ValueError(f"the tar of the built image lacks {len(missing)} changed paths, e.g. {missing[:3]}")
    for path in changes.deleted:
        marker, info = whiteout_header(path)
        tree.whiteouts[marker] = info
    return tree


def compare_listings(expected: dict[str, Stat], actual: dict[str, Stat]) -> list[str]:
    """Differences between two images' listings, as the layers define a file: type, mode, owner, size,
    mtime to the second and link target; directory times and every ctime aside."""
    def key(stat: Stat) -> tuple:
        mtime = "" if stat.is_dir else stat.mtime.split(".")[0]
        return (stat.type, stat.mode, stat.uid, stat.gid, 0 if stat.is_dir else stat.size, mtime, stat.link)

    problems = []
    for path in sorted(set(expected) | set(actual)):
        if is_engine_path(path):
            continue
        a, b = expected.get(path), actual.get(path)
        if a is None:
            problems.append(f"unexpected /{path}")
        elif b is None:
            problems.append(f"missing /{path}")
        elif key(a) != key(b):
            problems.append(f"/{path}: {key(a)} != {key(b)}")
    return problems
