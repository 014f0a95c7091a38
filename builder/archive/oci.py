"""The archive file: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) in a tar,
as ``skopeo``'s ``oci-archive:`` transport reads it, plus the version's records under ``asci/``.

Members are written and read one at a time: a blob streams from its source into the tar (hashed on
the way) and out of it again, so no whole file is held in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from typing import BinaryIO, Callable

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
RECORDS = "asci/"  # the folder of the version's records inside the archive
VERSION_FILE = RECORDS + "version.json"
SUMS_FILE = RECORDS + "SHA256SUMS"
RPM_FOLDER = RECORDS + "rpms/"
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20
MTIME = 0  # members carry no time of export: the same version exports to the same bytes


def blob_path(digest: str) -> str:
    algorithm, hexdigest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexdigest}"


def digest_of_path(path: str) -> str | None:
    """``sha256:…`` of a ``blobs/sha256/<hex>`` member name, else None."""
    parts = path.split("/")
    return f"{parts[1]}:{parts[2]}" if len(parts) == 3 and parts[0] == "blobs" else None


def index_document(manifest_digest: str, size: int, media_type: str, ref_name: str) -> bytes:
    """``index.json`` naming the one manifest (by digest, size, media type and reference name)."""
    return json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": media_type, "digest": manifest_digest, "size": size,
         "annotations": {REF_NAME: ref_name}}]}, indent=2).encode()


class Meter:
    """Bytes moved of a known total, reported as a log line at most every ``every_s`` seconds."""

    def __init__(self, log: Callable[[str], None], verb: str, total: int, every_s: float = 2.0):
        self.log, self.verb, self.total, self.done = log, verb, total, 0
        self.every, self.last = every_s, time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.last >= self.every:
            self.report()

    def report(self) -> None:
        self.last = time.monotonic()
        self.log(f"{self.verb} {self.done / 2**20:.1f} of {self.total / 2**20:.1f} MiB")


class HashingReader:
    """Reads from ``source``, hashing (sha256) and counting what passes, reporting to ``seen``."""

    def __init__(self, source: BinaryIO, seen: Callable[[int], None] = lambda n: None):
        self.source, self.seen = source, seen
        self.sha256, self.count = hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.sha256.update(data)
        self.count += len(data)
        self.seen(len(data))
        return data

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


class ArchiveWriter:
    """Adds members to a tar file being written (regular files, mode 0644, no owner, no time)."""

    def __init__(self, handle: BinaryIO):
        self.tar = tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT)
        self.sums: dict[str, str] = {}
        self._dirs: set[str] = set()

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        chain = []
        while parent and parent not in self._dirs:
            chain.append(parent)
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        for folder in reversed(chain):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            self.tar.addfile(info)
            self._dirs.add(folder)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, MTIME
        return info

    def add_bytes(self, name: str, data: bytes) -> str:
        """Add ``data`` as ``name``; returns its sha256 (hex)."""
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        digest = hashlib.sha256(data).hexdigest()
        self.sums[name] = digest
        return digest

    def add_stream(self, name: str, source: BinaryIO, size: int, seen: Callable[[int], None]) -> str:
        """Stream exactly ``size`` bytes of ``source`` into the archive as ``name``; returns the sha256."""
        reader = HashingReader(source, seen)
        self.tar.addfile(self._info(name, size), reader)
        if reader.count != size:
            raise OSError(f"{name}: the source gave {reader.count} bytes, {size} expected")
        self.sums[name] = reader.hexdigest
        return reader.hexdigest

    def add_sums(self) -> None:
        """Write ``asci/SHA256SUMS``: the sha256 of every other member (sha256sum's format)."""
        text = "".join(f"{digest}  {name}\n" for name, digest in sorted(self.sums.items()))
        self.add_bytes(SUMS_FILE, text.encode())

    def close(self) -> None:
        self.tar.close()


def parse_sums(text: str) -> dict[str, str]:
    """``{member: sha256}`` of a SHA256SUMS text."""
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split("  ", 1)
            sums[name] = digest
    return sums


def members(handle: BinaryIO):
    """``(name, size, stream)`` of each regular file of the tar read from ``handle``, in order."""
    with tarfile.open(fileobj=handle, mode="r|") as tar:
        for info in tar:
            if info.isdir():
                continue
            if not info.isfile():
                raise ValueError(f"{info.name}: not a regular file (links are not part of an archive)")
            yield info.name, info.size, tar.extractfile(info)
