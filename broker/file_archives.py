"""A folder's tar stream (what a file channel gives) re-packed as a zip stream, a member at a time.

Nothing is held whole: tar members are read as they arrive and written to a zip without seeking
(data descriptors, ZIP64 for large members), and the zip's bytes are handed on as they are made.
Folders become ``name/`` entries (empty ones survive); symlinks and other special files are left
out of a zip (a tar keeps them as links).
"""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from typing import Iterator

from asci.streams import ChunkReader

COPY = 1 << 20


class _Sink(io.RawIOBase):
    """Collects what zipfile writes, for the generator to hand on."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def tar_to_zip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The zip of the tar stream ``chunks``."""
    sink = _Sink()
    source = tarfile.open(fileobj=io.BufferedReader(ChunkReader(chunks), COPY), mode="r|")
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for member in source:
            if not (member.isfile() or member.isdir()):
                continue
            name = member.name + ("/" if member.isdir() and not member.name.endswith("/") else "")
            info = zipfile.ZipInfo(name, time.localtime(max(member.mtime, 315532800))[:6])
            info.external_attr = ((0o40000 if member.isdir() else 0o100000) | (member.mode & 0o7777)) << 16
            if member.isdir():
                info.external_attr |= 0x10
                archive.writestr(info, b"")
            else:
                info.file_size = member.size
                with archive.open(info, "w", force_zip64=member.size > (1 << 31)) as target:
                    data = source.extractfile(member)
                    while block := data.read(COPY):
                        target.write(block)
                        if sum(map(len, sink.parts)) >= COPY:
                            yield sink.take()
            if sink.parts:
                yield sink.take()
    source.close()
    if sink.parts:
        yield sink.take()


__all__ = ["tar_to_zip"]
