"""Webhook notifications: a JSON POST to each configured URL when a build ends."""

from __future__ import annotations

import logging

import requests

from asci.config import Settings
from ci.models import BuildJob

log = logging.getLogger("asci.ci.notify")


def build_payload(job: BuildJob, event: str) -> dict:
    """What a webhook receives: ``event`` is ``build.succeeded`` or ``build.failed``."""
    return {"event": event, "job": job.as_dict(), "environment": job.environment, "version": job.version,
            "error": job.error or None}


def notify(settings: Settings, job: BuildJob, event: str, timeout_s: float = 5.0) -> dict[str, str]:
    """POST the payload to every URL; returns url → outcome. A failing hook never fails the build."""
    outcomes: dict[str, str] = {}
    payload = build_payload(job, event)
    for url in settings.ci_webhook_urls:
        try:
            response = requests.post(url, json=payload, timeout=timeout_s,
                                     headers={"User-Agent": "asci-ci", "X-Asci-Event": event})
            outcomes[url] = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            outcomes[url] = f"failed: {exc}"
            log.warning("webhook %s failed: %s", url, exc)
    return outcomes
