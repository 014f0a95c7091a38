"""The registry's HTTP API (distribution v2) for what docker-py cannot do: probe, retag, delete."""

from __future__ import annotations

import requests

from builder.errors import DockerError

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
TIMEOUT = 30


def _url(registry: str, repository: str, reference: str) -> str:
    return f"http://{registry}/v2/{repository}/manifests/{reference}"


def _request(method: str, url: str, **kwargs) -> requests.Response:
    try:
        return requests.request(method, url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        raise DockerError(f"registry request {method} {url} failed: {exc}") from None


def manifest_digest(registry: str, repository: str, reference: str) -> str | None:
    """The digest of ``repository:reference`` in the registry, or None when absent."""
    response = _request("HEAD", _url(registry, repository, reference), headers={"Accept": MANIFEST_TYPES})
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise DockerError(f"registry {registry}: HEAD {repository}:{reference} answered {response.status_code}")
    return response.headers.get("Docker-Content-Digest")


def tag_exists(registry: str, repository: str, tag: str) -> bool:
    return manifest_digest(registry, repository, tag) is not None


def list_tags(registry: str, repository: str) -> list[str]:
    """Tags of ``repository`` (empty when the repository does not exist)."""
    response = _request("GET", f"http://{registry}/v2/{repository}/tags/list")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return sorted(response.json().get("tags") or [])


def copy_tag(registry: str, repository: str, source: str, target: str) -> str:
    """Point tag ``target`` at the manifest of ``source`` (no layers move); returns the digest."""
    got = _request("GET", _url(registry, repository, source), headers={"Accept": MANIFEST_TYPES})
    if got.status_code != 200:
        raise DockerError(f"registry {registry}: {repository}:{source} not found ({got.status_code})")
    put = _request("PUT", _url(registry, repository, target), data=got.content,
                   headers={"Content-Type": got.headers.get("Content-Type", MANIFEST_TYPES.split(",")[0])})
    if put.status_code not in (200, 201):
        raise DockerError(f"registry {registry}: tagging {repository}:{target} failed ({put.status_code}: {put.text})")
    return put.headers.get("Docker-Content-Digest") or got.headers.get("Docker-Content-Digest", "")


def delete_manifest(registry: str, repository: str, reference: str) -> bool:
    """Delete a manifest by tag or digest (every tag on it goes); True when something was deleted."""
    digest = reference if reference.startswith("sha256:") else manifest_digest(registry, repository, reference)
    if digest is None:
        return False
    response = _request("DELETE", _url(registry, repository, digest))
    if response.status_code in (202, 200):
        return True
    if response.status_code == 404:
        return False
    raise DockerError(f"registry {registry}: deleting {repository}@{digest} failed ({response.status_code})")
