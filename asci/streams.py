"""Byte streams shared by the packages: a readable file over an iterator of chunks (what the Docker
engine's archive API and HTTP bodies hand out), so ``tarfile`` and ``zipfile`` can read them as they come."""

from __future__ import annotations

import io
from typing import Iterator


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (wrap it in ``io.BufferedReader`` for reads of any size)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count
