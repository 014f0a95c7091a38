"""What a person waiting for a build sees: its steps, not a minute of silence nor every line of dnf.

:class:`BuildProgress` is a log sink for a build job's lines (``ci.Worker(echo=...)``): the builder's and
the smoke gate's own lines pass through, Docker's ``Step N/M`` lines become one line each, and the output of
a step (dnf, rpm) is summarised as a "still running" line at most every ``every_s`` seconds. Every line
it passes on starts with the seconds since the build began.
"""

from __future__ import annotations

import re
import time

from asci.progress import LogSink

_JOB_PREFIX = re.compile(r"^\[job \d+ [^\]]+\] ")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_END_OF_BUILD = ("Successfully built", "Successfully tagged")


class BuildProgress:
    """A log sink that passes on a build's steps to ``show`` (see the module)."""

    def __init__(self, show: LogSink, every_s: float = 15.0, clock=time.monotonic) -> None:
        self.show, self.every_s, self.clock = show, every_s, clock
        self.began = clock()
        self.step = ""
        self.in_build = False
        self.quiet_since = self.began

    def _say(self, text: str) -> None:
        self.show(f"  [{self.clock() - self.began:4.0f} s] {text}")
        self.quiet_since = self.clock()

    def __call__(self, line: str) -> None:
        line = _JOB_PREFIX.sub("", line.rstrip())
        if not line:
            return
        step = _STEP.match(line)
        if step:
            self.in_build = True
            number, total, command = step.groups()
            self.step = f"step {number}/{total}"
            self._say(f"image {self.step}: {command[:100]}")
        elif line.startswith(_END_OF_BUILD):
            if self.in_build:
                self.in_build = False
                self._say("image built")
        elif not self.in_build:
            self._say(line[:160])
        elif self.clock() - self.quiet_since >= self.every_s:
            self._say(f"image {self.step} still running: {line[:100]}")
