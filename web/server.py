"""The ``web`` part: the web application served by waitress on the configured loopback address.

With ``web_processes`` above 1 the part runs that many waitress processes, each with its own
listening socket on the same address and port (``SO_REUSEPORT``: the kernel spreads new
connections over them), so the application uses more than one CPU core despite the GIL. The first
process starts the others, beats for the part and stops them when it stops; each of them ends when
it does (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading

from asci.config import Settings
from asci.heartbeats import beat

# What waitress reads from a connection at a time. It spools a request's whole body before the
# application sees the first byte; at its default (8 KiB) a 1 GiB upload into a desktop is 131,072 trips
# through its Python loop and ran at 0.42 x `docker cp`, at 1 MiB 0.68 x (docs/benchmarks.md). Small
# requests read what there is, whatever the size.
RECV_BYTES = 1 << 20

BEAT_S = 15.0
REPLICA_ENV = "ASCI_WEB_REPLICA"  # set in the extra processes: they serve, nothing else


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with ``reuse_port`` other processes may bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _die_with_parent() -> None:
    """In a replica (before exec): receive SIGTERM when the first web process ends, however it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_replicas(settings: Settings, host: str, port: int) -> list[subprocess.Popen]:
    """``web_processes - 1`` more web processes on ``host:port`` (same settings, same process group)."""
    environment = {**os.environ, **settings.to_environ(), REPLICA_ENV: "1",
                   "ASCI_WEB_HOST": host, "ASCI_WEB_PORT": str(port)}
    return [subprocess.Popen([sys.executable, "-m", "asci", "part", "web"], env=environment,
                             stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            for _ in range(settings.web_processes - 1)]


def serve_web(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve ``create_app(settings)`` until SIGTERM or Ctrl-C; beats as part ``web`` meanwhile."""
    import waitress

    from web import create_app

    host, port = host or settings.web_host, port or settings.web_port
    replica = os.environ.get(REPLICA_ENV) == "1"
    several = settings.web_processes > 1
    app = create_app(settings)
    # bound once the application is built (a client knocking earlier is refused, not kept waiting), and
    # before the replicas start: a port in use fails here
    sock = listening_socket(host, port, reuse_port=several)
    stop = threading.Event()
    replicas: list[subprocess.Popen] = []

    def beats() -> None:
        while True:
            beat(settings, "web", f"serving on {host}:{port}"
                 + (f" ({settings.web_processes} processes)" if several else ""))
            if stop.wait(BEAT_S):
                return

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds like Ctrl-C
    try:
        if several and not replica:
            replicas = start_replicas(settings, host, port)  # from the main thread, before any other starts
        if not replica:
            threading.Thread(target=beats, name="web-heartbeat", daemon=True).start()
        # the largest body the application takes is an RPM upload or a file uploaded into a desktop:
        # waitress refuses anything larger itself (and spools bodies to a temporary file, not memory)
        largest = max(settings.repo_max_rpm_bytes, settings.files_max_upload_bytes)
        waitress.serve(app, sockets=[sock], threads=settings.web_threads, ident="asci",
                       max_request_body_size=largest + (1 << 20), recv_bytes=RECV_BYTES)
    finally:
        stop.set()
        for process in replicas:
            if process.poll() is None:
                process.terminate()
        for process in replicas:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
