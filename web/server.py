"""Run the web application with waitress on the configured loopback address."""

from __future__ import annotations

import signal
import sys

from asci.config import Settings


def run_server(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve ``create_app(settings)`` and websockify (the noVNC WebSocket) until interrupted."""
    import waitress

    from web import create_app, vnc_proxy

    app = create_app(settings)
    # SIGTERM (a service manager, a test) must unwind like Ctrl-C so websockify is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with vnc_proxy.running(settings):  # websockify on 127.0.0.1:<websockify_port>, token plugin
        waitress.serve(app, host=host or settings.web_host, port=port or settings.web_port, threads=16,
                       ident="asci")
