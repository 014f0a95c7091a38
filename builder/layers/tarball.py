"""Deterministic layer tarballs: the same entries give the same tar, diff_id and gzip blob.

Entries are written sorted by path; headers keep only type, permission bits, numeric owner, size,
link target, device numbers, the file's own mtime (a directory gets :data:`DIR_MTIME`) and the
``SCHILY.xattr.*`` records (file capabilities travel that way); no user or group names, no atime or
ctime. The gzip stream has mtime 0 and no file name, so the blob depends only on the tar and zlib;
a known diff_id reuses its recorded blob instead of trusting another zlib to give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.layers.tree import Entry

DIR_MTIME = 1  # every directory entry gets this mtime (Jib uses epoch + 1 s too)
GZIP_LEVEL = 6


@dataclass
class LayerBlob:
    """A layer: its diff_id, and its gzip blob (``path`` None: the blob is already in a registry)."""

    diff_id: str
    digest: str
    size: int
    raw_size: int = 0
    path: Path | None = None


class _HashSink:
    """A write-only file that hashes and counts what passes through, optionally into ``target``."""

    def __init__(self, target: BinaryIO | None = None):
        self.sha = hashlib.sha256()
        self.size = 0
        self.target = target

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def header(entry: Entry, name: str) -> tarfile.TarInfo:
    """The normalized header of ``entry`` under ``name``."""
    src = entry.info
    info = tarfile.TarInfo(name)
    info.type = src.type
    info.mode = src.mode & 0o7777
    info.uid, info.gid = src.uid, src.gid
    info.uname = info.gname = ""
    info.mtime = DIR_MTIME if src.isdir() else int(src.mtime)
    info.linkname = src.linkname if (src.issym() or src.islnk()) else ""
    info.devmajor, info.devminor = src.devmajor, src.devminor
    info.size = src.size if src.isreg() else 0
    info.pax_headers = {k: v for k, v in sorted(src.pax_headers.items()) if k.startswith("SCHILY.xattr.")}
    return info


def _hardlink_plan(entries: list[Entry]) -> dict[str, str | None]:
    """For every hardlink set in this layer, the first name (sorted) holds the data and the others
    link to it: ``path → link target`` (None: a regular file with data)."""
    present = {e.path for e in entries}
    sets: dict[str, list[str]] = {}
    for e in entries:
        if e.info.islnk():
            sets.setdefault(e.info.linkname, []).append(e.path)
    plan: dict[str, str | None] = {}
    for target, links in sets.items():
        names = sorted(links + ([target] if target in present else []))
        plan[names[0]] = None
        for other in names[1:]:
            plan[other] = names[0]
    return plan


def _length(handle: BinaryIO) -> int:
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    return size


def write_layer(entries: list[Entry], out: Path | None = None, level: int = GZIP_LEVEL) -> LayerBlob:
    """Write ``entries`` as a tar, gzipped into ``out``; with ``out`` None only the diff_id is
    computed (to find out whether a recorded blob can be reused)."""
    plan = _hardlink_plan(entries)
    by_path = {e.path: e for e in entries}
    raw = _HashSink()
    target = open(out, "wb") if out is not None else None
    packed = _HashSink(target) if target is not None else None
    gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=packed, mtime=0) if packed else None

    class _Tee:
        def write(self, data: bytes) -> int:
            raw.write(data)
            if gz is not None:
                gz.write(data)
            return len(data)

    try:
        with tarfile.open(fileobj=_Tee(), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(by_path, key=lambda p: p.split("/")):
                entry = by_path[path]
                info = header(entry, path)
                if entry.info.islnk():
                    link = plan.get(path)
                    if link is None:  # first of its set in this layer: the data goes here
                        if entry.opener is None:
                            raise ValueError(f"hardlink {path}: target {entry.info.linkname} unreadable")
                        info.type, info.linkname = tarfile.REGTYPE, ""
                        with entry.opener() as handle:
                            info.size = _length(handle)
                            tar.addfile(info, handle)
                        continue
                    info.linkname = link
                    tar.addfile(info)
                elif entry.info.isreg():
                    if plan.get(path) is not None:  # a regular file linked to an earlier name
                        info.type, info.linkname, info.size = tarfile.LNKTYPE, plan[path], 0
                        tar.addfile(info)
                    elif entry.opener is None:  # whiteout markers: empty regular files
                        if info.size:
                            raise ValueError(f"{path}: no content to write")
                        tar.addfile(info)
                    else:
                        with entry.opener() as handle:
                            tar.addfile(info, handle)
                else:
                    tar.addfile(info)
        if gz is not None:
            gz.close()
    finally:
        if target is not None:
            target.close()
    if packed is None:
        return LayerBlob(raw.digest, "", 0, raw.size, None)
    return LayerBlob(raw.digest, packed.digest, packed.size, raw.size, out)
