"""Reachability checks for the services ASCI depends on (Docker daemons, registry)."""

from __future__ import annotations

import requests

from asci.config import Settings


def docker_status(settings: Settings) -> dict:
    """Whether each configured Docker daemon answers a ping, with its version."""
    import docker

    hosts = {}
    for url in settings.docker_hosts:
        try:
            client = docker.DockerClient(base_url=url, timeout=3)
            try:
                hosts[url] = {"ok": True, "version": client.version().get("Version")}
            finally:
                client.close()
        except Exception as exc:  # any failure means "not answering"; reported, not raised
            hosts[url] = {"ok": False, "error": str(exc).splitlines()[0][:200]}
    return {"ok": all(h["ok"] for h in hosts.values()), "hosts": hosts}


def registry_status(settings: Settings) -> dict:
    """Whether the registry answers its v2 API."""
    try:
        response = requests.get(f"http://{settings.registry}/v2/", timeout=3)
        return {"ok": response.status_code == 200, "status": response.status_code}
    except requests.RequestException as exc:
        return {"ok": False, "error": str(exc)[:200]}
