"""Run the viewer proxy (``web.viewer_proxy``, the noVNC WebSocket endpoint) bound to 127.0.0.1, beside the web server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from asci.config import Settings
from web.errors import WebError


def command(settings: Settings, port: int | None = None) -> list[str]:
    """The viewer proxy's command line for ``settings`` (``asci part websockify``)."""
    return [sys.executable, "-m", "asci", "part", "websockify", "--port", str(port or settings.websockify_port)]


def environment(settings: Settings) -> dict[str, str]:
    """The process environment: exactly these settings."""
    return {**os.environ, **settings.to_environ()}


def start(settings: Settings, port: int | None = None, log_path=None, timeout: float = 15) -> subprocess.Popen:
    """Start the viewer proxy and wait until it listens; the caller stops it (``stop``)."""
    port = port or settings.websockify_port
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command(settings, port), env=environment(settings), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WebError(f"the viewer proxy exited with status {process.returncode} (port {port} in use?)")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    stop(process)
    raise WebError(f"the viewer proxy did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Stop the viewer proxy (its whole process group)."""
    import signal

    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def websocket_url(settings: Settings, host: str, scheme: str) -> str:
    """The ws(s):// base URL the browser opens (``websockify_url`` or the page's host and the proxy port)."""
    if settings.websockify_url:
        return settings.websockify_url.rstrip("/")
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}:{settings.websockify_port}"


@contextlib.contextmanager
def running(settings: Settings, log_path=None) -> Iterator[subprocess.Popen]:
    """The viewer proxy for the lifetime of a ``with`` block."""
    process = start(settings, log_path=log_path or settings.data_dir / "logs" / "websockify.log")
    try:
        yield process
    finally:
        stop(process)
