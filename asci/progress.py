"""How long-running work reports what it is doing: a log sink is a function taking one line."""

from __future__ import annotations

from typing import Callable

LogSink = Callable[[str], None]
"""Receives one human-readable line per step (``print``, a list's ``append``, a job log)."""


def discard(line: str) -> None:
    """A log sink that drops every line."""


def mib(size: int) -> str:
    """``123.4 MiB``."""
    return f"{size / (1 << 20):.1f} MiB"


class TransferProgress:
    """Turns a Docker pull or push stream into "bytes done of total" lines, at most every ``every_s`` seconds.

    Feed it each JSON chunk of the stream (``{"id": layer, "status": ..., "progressDetail":
    {"current": ..., "total": ...}}``); it tracks every layer and sends ``log`` a line such as
    ``pulling image: 48.0 of 112.5 MiB (3 of 7 layers done)``.
    """

    DONE = ("Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from")

    def __init__(self, what: str, log: LogSink, every_s: float = 2.0, clock=None) -> None:
        import time

        self.what, self.log, self.every_s = what, log, every_s
        self._clock = clock or time.monotonic
        self._last = -every_s
        self.layers: dict[str, tuple[int, int]] = {}
        self.done: set[str] = set()

    def update(self, chunk: dict) -> None:
        """Account one chunk of the stream (chunks without a layer id, a short hexadecimal one, are ignored)."""
        layer = chunk.get("id") or ""
        if len(layer) != 12 or not all(c in "0123456789abcdef" for c in layer):
            return  # not a layer's line ("Pulling from", "Digest", "Status", a push's tag line)
        status = chunk.get("status", "")
        detail = chunk.get("progressDetail") or {}
        if status.startswith(self.DONE):
            self.done.add(layer)
            current, total = self.layers.get(layer, (0, 0))
            self.layers[layer] = (total or current, total or current)
        elif detail.get("total"):
            self.layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif layer not in self.layers:
            self.layers[layer] = (0, 0)
        if self._clock() - self._last >= self.every_s:
            self.report()

    def report(self) -> str:
        """Send (and return) the current line."""
        self._last = self._clock()
        current = sum(done for done, _ in self.layers.values())
        total = sum(total for _, total in self.layers.values())
        line = (f"{self.what}: {mib(current)} of {mib(total)} "
                f"({len(self.done)} of {len(self.layers)} layers done)")
        self.log(line)
        return line
