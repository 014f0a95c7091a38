"""The main job: ``asci serve`` runs, supervises and stops the platform's long-running parts.

=========== ======================================================== ====================
part        what it does                                             beats
=========== ======================================================== ====================
web         the web UI and JSON API (waitress on web_host:web_port)  itself, every 15 s
websockify  the viewer proxy: every noVNC WebSocket, one event loop     the supervisor
worker      ci: watch, queue, build, smoke-test, promote             itself, every round
reconcile   nodes and sessions made to agree with the engines        itself, every pass
cull        idle and expired sessions warned and stopped             itself, every pass
=========== ======================================================== ====================

Each part is a child process (its own process group, its output in ``<data_dir>/logs/<part>.log``)
started with exactly the supervisor's settings. A part that exits is restarted after 1, 2, 4 ...
seconds (up to ``restart_backoff_max_s``; the delay starts over once a part ran a minute), and the
crash is logged and recorded as its heartbeat. SIGTERM or Ctrl-C stops every part. The setting
``serve_parts`` (or ``asci serve --only/--without``) runs a subset, for a facility that runs the
parts as separate services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from asci.config import Settings
from asci.errors import ConfigError
from asci.heartbeats import beat, this_instance
from asci.progress import LogSink
from web import vnc_proxy

PARTS = ("web", "websockify", "worker", "reconcile", "cull")
STABLE_AFTER_S = 60.0  # a part that ran this long starts its back-off over
STOP_GRACE_S = 10.0


def chosen_parts(settings: Settings, only: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The parts to run: ``only`` (or the ``serve_parts`` setting, or all) minus ``without``; names checked."""
    wanted = only or settings.serve_parts or PARTS
    unknown = [name for name in (*wanted, *without) if name not in PARTS]
    if unknown:
        raise ConfigError(f"serve_parts: unknown part(s) {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    parts = tuple(name for name in PARTS if name in wanted and name not in without)
    if not parts:
        raise ConfigError("serve_parts: nothing left to run")
    return parts


def part_command(settings: Settings, part: str) -> list[str]:
    """The command line of one part's process."""
    if part == "websockify":
        return vnc_proxy.command(settings)  # the viewer proxy on websockify_port
    return [sys.executable, "-m", "asci", "part", part]


@dataclass
class Child:
    """One supervised part."""

    part: str
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    delay: float = 1.0
    restart_at: float | None = None
    last_beat: float = 0.0
    log_files: list = field(default_factory=list)


class Supervisor:
    """Starts the parts, restarts the ones that exit, and stops them all on request."""

    def __init__(self, settings: Settings, parts: tuple[str, ...], echo: LogSink = print,
                 command: Callable[[Settings, str], list[str]] = part_command) -> None:
        self.settings = settings
        self.children = {part: Child(part) for part in parts}
        self.echo = echo
        self.command = command
        self.stopping = threading.Event()
        self.environment = {**os.environ, **settings.to_environ()}

    # ------------------------------------------------------------ running
    def run(self, poll_s: float = 0.5) -> None:
        """Supervise until :meth:`stop` is called (or SIGTERM/SIGINT when run in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stopping.set())
        try:
            for child in self.children.values():
                self._start(child)
            while not self.stopping.wait(poll_s):
                for child in self.children.values():
                    self._check(child)
        finally:
            self._stop_all()

    def stop(self) -> None:
        """Ask :meth:`run` to stop every part and return."""
        self.stopping.set()

    def _start(self, child: Child) -> None:
        logs_dir = self.settings.data_dir / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        out = open(logs_dir / f"{child.part}.log", "ab")
        child.log_files.append(out)
        child.process = subprocess.Popen(self.command(self.settings, child.part), env=self.environment, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        child.started, child.restart_at = time.monotonic(), None
        self.echo(f"asci serve: started {child.part} (pid {child.process.pid})")
        beat(self.settings, child.part, "started by asci serve", instance=this_instance(child.process.pid),
             restarts=child.restarts)

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._start(child)
            return
        status = child.process.poll()
        if status is None:
            if child.part == "websockify" and now - child.last_beat >= 15:
                child.last_beat = now
                answering = _listens(self.settings.websockify_port)
                beat(self.settings, "websockify", "listening" if answering else "not listening",
                     instance=this_instance(child.process.pid), state="running" if answering else "error")
            return
        ran = now - child.started
        if ran >= STABLE_AFTER_S:
            child.delay = 1.0
        why = f"exited with status {status} after {ran:.0f} s; restarting in {child.delay:g} s"
        self.echo(f"asci serve: {child.part} {why} (log: {self.settings.data_dir / 'logs' / child.part}.log)")
        beat(self.settings, child.part, why, instance=this_instance(child.process.pid), state="crashed",
             restarts=child.restarts)
        child.restart_at = now + child.delay
        child.delay = min(child.delay * 2, self.settings.restart_backoff_max_s)

    def _stop_all(self) -> None:
        # every part whose end is not recorded yet: running ones, and ones that exited since the last check
        # (their "running" heartbeat would otherwise outlive them)
        running = [child for child in self.children.values() if child.process and child.restart_at is None]
        for child in running:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            beat(self.settings, child.part, "stopped by asci serve", instance=this_instance(child.process.pid),
                 state="stopped", restarts=child.restarts)
            self.echo(f"asci serve: stopped {child.part}")
        for child in self.children.values():
            for handle in child.log_files:
                handle.close()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0
