"""Run websockify with the session-token plugin, bound to 127.0.0.1, beside the web server."""

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
    """The websockify command line for ``settings``."""
    return [sys.executable, "-m", "websockify", "--token-plugin", "web.vnc_tokens.SessionTokens",
            "--token-source", str(settings.data_dir), f"127.0.0.1:{port or settings.websockify_port}"]


def environment(settings: Settings) -> dict[str, str]:
    """The process environment: the settings the token plugin needs, explicitly."""
    env = dict(os.environ)
    env.update(ASCI_DATA_DIR=str(settings.data_dir), ASCI_DATABASE_URL=settings.database_url,
               ASCI_VNC_TOKEN_TTL_S=str(settings.vnc_token_ttl_s),
               ASCI_VNC_TOUCH_INTERVAL_S=str(settings.vnc_touch_interval_s),
               ASCI_VIEWER_CHECK_INTERVAL_S=str(settings.viewer_check_interval_s))
    if settings.secret_key:
        env["ASCI_SECRET_KEY"] = settings.secret_key
    return env


def start(settings: Settings, port: int | None = None, log_path=None, timeout: float = 15) -> subprocess.Popen:
    """Start websockify and wait until it listens; the caller stops it (``stop``)."""
    port = port or settings.websockify_port
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command(settings, port), env=environment(settings), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WebError(f"websockify exited with status {process.returncode} (port {port} in use?)")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    stop(process)
    raise WebError(f"websockify did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Stop websockify and the children it forked for connections."""
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
    """websockify for the lifetime of a ``with`` block (what ``asci serve`` wraps waitress in)."""
    process = start(settings, log_path=log_path or settings.data_dir / "logs" / "websockify.log")
    try:
        yield process
    finally:
        stop(process)
