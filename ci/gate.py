"""The smoke-test gate a new version passes before it becomes current.

It launches the version through the broker's public API (``broker.probe_desktop``), so exactly as
a user's session runs: the configured backend, the image by digest, the same isolation and
hardening, an unprivileged uid, VNC on the probe's own Unix socket (no port to race for). Once the
broker has proved the probe's own VNC server answers, it waits until the framebuffer shows a drawn
desktop (:func:`asci.rfb.wait_for_desktop`), then runs each check command the recipe declares inside the
running desktop, as the desktop's user. Any failure raises :class:`GateFailed` with the reason;
the probe (container and home) is removed either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import broker
from asci import rfb
from asci.config import Settings
from asci.progress import LogSink, discard
from ci.errors import GateFailed


@dataclass
class GateReport:
    """What the gate saw: framebuffer size and colours, and each check's exit code and output."""

    width: int = 0
    height: int = 0
    colours: int = 0
    checks: list[dict] = field(default_factory=list)


def smoke_test(settings: Settings, image: str, checks: list[str] | tuple[str, ...], environment: str,
               log: LogSink = discard) -> GateReport:
    """Launch ``image`` (``repo@sha256:...``) like a session, wait for the desktop, run ``checks``."""
    report = GateReport()
    try:
        with broker.probe_desktop(settings, image, environment) as probe:
            log(f"smoke test: launched {image}, VNC on {probe.socket}")
            try:
                frame = rfb.wait_for_desktop(probe.socket, probe.password, timeout=settings.ci_gate_timeout_s)
            except rfb.RFBError as exc:
                tail = probe.logs(tail=20).strip().splitlines()[-5:]
                raise GateFailed(f"desktop did not come up: {exc}"
                                 + (f" (log: {' | '.join(tail)})" if tail else "")) from None
            report.width, report.height, report.colours = frame.width, frame.height, frame.distinct_colours()
            log(f"smoke test: desktop drawn ({frame.width}x{frame.height}, {report.colours} colours)")
            for check in checks:
                exit_code, text = probe.run(check)
                text = text.strip()
                report.checks.append({"command": check, "exit_code": exit_code, "output": text[-2000:]})
                log(f"smoke test: `{check}` exited {exit_code}: {text[-200:]}")
                if exit_code != 0:
                    raise GateFailed(f"check `{check}` exited {exit_code}: {text[-300:] or 'no output'}")
    except broker.BrokerError as exc:
        raise GateFailed(f"the desktop could not be started: {exc}") from None
    return report
