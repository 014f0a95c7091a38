"""The ``web`` part: the web application served by waitress on the configured loopback address."""

from __future__ import annotations

import signal
import sys
import threading

from asci.config import Settings
from asci.heartbeats import beat

BEAT_S = 15.0


def serve_web(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve ``create_app(settings)`` until SIGTERM or Ctrl-C; beats as part ``web`` meanwhile."""
    import waitress

    from web import create_app

    host, port = host or settings.web_host, port or settings.web_port
    app = create_app(settings)
    stop = threading.Event()

    def beats() -> None:
        while True:
            beat(settings, "web", f"serving on {host}:{port}")
            if stop.wait(BEAT_S):
                return

    threading.Thread(target=beats, name="web-heartbeat", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds like Ctrl-C
    try:
        # the largest body the application takes is an RPM upload or a file uploaded into a desktop:
        # waitress refuses anything larger itself (and spools bodies to a temporary file, not memory)
        largest = max(settings.repo_max_rpm_bytes, settings.files_max_upload_bytes)
        waitress.serve(app, host=host, port=port, threads=16, ident="asci", max_request_body_size=largest + (1 << 20))
    finally:
        stop.set()
