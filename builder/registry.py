"""The registry's HTTP API (distribution v2): probe, read, retag, delete, and push blobs and manifests.

Every function takes the registry as a host (``127.0.0.1:5000``: anonymous, enough for reads) or as
a :class:`Registry` from :func:`connect`, which carries the builder's credentials (HTTP basic) for
pushes and deletes: the registry serves pulls anonymously and refuses writes without them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable

import requests

from builder.errors import DockerError

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = ", ".join([
    MANIFEST_V2,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
TIMEOUT = 30
UPLOAD_TIMEOUT = 600
CHUNK = 1 << 20


@dataclass(frozen=True)
class Registry:
    """A registry host and the credentials to write to it (None: anonymous)."""

    host: str
    auth: tuple[str, str] | None = None
    push_host: str = ""  # where Docker pushes (an endpoint that challenges); empty: ``host``

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    @property
    def docker_push_host(self) -> str:
        return self.push_host or self.host

    def __str__(self) -> str:
        return self.host


def connect(settings) -> Registry:
    """The registry of ``settings`` with the builder's credentials (when configured)."""
    return Registry(settings.registry, settings.registry_credentials, settings.registry_push)


def _of(registry: "str | Registry") -> Registry:
    return registry if isinstance(registry, Registry) else Registry(registry)


def _url(registry: Registry, repository: str, reference: str) -> str:
    return f"{registry.base}/v2/{repository}/manifests/{reference}"


def _request(registry: Registry, method: str, url: str, timeout: float = TIMEOUT, **kwargs) -> requests.Response:
    try:
        response = requests.request(method, url, timeout=timeout, auth=registry.auth, **kwargs)
    except requests.RequestException as exc:
        raise DockerError(f"registry request {method} {url} failed: {exc}") from None
    if response.status_code == 401:
        who = f"user {registry.auth[0]!r}" if registry.auth else "no credentials"
        raise DockerError(f"registry {registry.host} refused {method} {url.split('/v2/', 1)[-1]} with {who} (401): "
                          "writing needs the builder's credentials (ASCI_REGISTRY_USERNAME/_PASSWORD or the "
                          "data directory's registry-auth/password)")
    if response.status_code == 503 and method not in ("GET", "HEAD"):
        raise DockerError(f"registry {registry.host} does not accept writes now (503: garbage collection?); "
                          "try again later")
    return response


def manifest_digest(registry, repository: str, reference: str) -> str | None:
    """The digest of ``repository:reference`` in the registry, or None when absent."""
    registry = _of(registry)
    response = _request(registry, "HEAD", _url(registry, repository, reference), headers={"Accept": MANIFEST_TYPES})
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise DockerError(f"registry {registry}: HEAD {repository}:{reference} answered {response.status_code}")
    return response.headers.get("Docker-Content-Digest")


def tag_exists(registry, repository: str, tag: str) -> bool:
    return manifest_digest(registry, repository, tag) is not None


def list_tags(registry, repository: str) -> list[str]:
    """Tags of ``repository`` (empty when the repository does not exist)."""
    registry = _of(registry)
    response = _request(registry, "GET", f"{registry.base}/v2/{repository}/tags/list")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return sorted(response.json().get("tags") or [])


def get_manifest(registry, repository: str, reference: str) -> tuple[bytes, str, str]:
    """``(bytes, media type, digest)`` of a manifest; DockerError when absent."""
    registry = _of(registry)
    got = _request(registry, "GET", _url(registry, repository, reference), headers={"Accept": MANIFEST_TYPES})
    if got.status_code != 200:
        raise DockerError(f"registry {registry}: {repository}:{reference} not found ({got.status_code})")
    digest = got.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(got.content).hexdigest()
    return got.content, got.headers.get("Content-Type", MANIFEST_V2), digest


def get_blob(registry, repository: str, digest: str) -> bytes:
    """A (small) blob, such as an image config."""
    registry = _of(registry)
    got = _request(registry, "GET", f"{registry.base}/v2/{repository}/blobs/{digest}")
    if got.status_code != 200:
        raise DockerError(f"registry {registry}: blob {digest} of {repository} not readable ({got.status_code})")
    if "sha256:" + hashlib.sha256(got.content).hexdigest() != digest:
        raise DockerError(f"registry {registry}: blob {digest} of {repository} does not match its digest")
    return got.content


def open_blob(registry, repository: str, digest: str) -> requests.Response:
    """A streaming response of a blob (use it as a context manager)."""
    registry = _of(registry)
    got = _request(registry, "GET", f"{registry.base}/v2/{repository}/blobs/{digest}", stream=True)
    if got.status_code != 200:
        got.close()
        raise DockerError(f"registry {registry}: blob {digest} of {repository} not readable ({got.status_code})")
    return got


def put_manifest(registry, repository: str, reference: str, manifest: bytes, media_type: str = MANIFEST_V2) -> str:
    """Store ``manifest`` as ``repository:reference``; returns its digest (checked against ours)."""
    registry = _of(registry)
    put = _request(registry, "PUT", _url(registry, repository, reference), data=manifest,
                   headers={"Content-Type": media_type})
    if put.status_code not in (200, 201):
        raise DockerError(f"registry {registry}: storing {repository}:{reference} failed ({put.status_code}: "
                          f"{put.text[:300]})")
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    if put.headers.get("Docker-Content-Digest", digest) != digest:
        raise DockerError(f"registry {registry} computed {put.headers['Docker-Content-Digest']} for "
                          f"{repository}:{reference}, we computed {digest}")
    return digest


def copy_tag(registry, repository: str, source: str, target: str) -> str:
    """Point tag ``target`` at the manifest of ``source`` (no layers move); returns the digest."""
    content, media_type, _digest = get_manifest(registry, repository, source)
    return put_manifest(registry, repository, target, content, media_type)


def delete_manifest(registry, repository: str, reference: str) -> bool:
    """Delete a manifest by tag or digest (every tag on it goes); True when something was deleted."""
    registry = _of(registry)
    digest = reference if reference.startswith("sha256:") else manifest_digest(registry, repository, reference)
    if digest is None:
        return False
    response = _request(registry, "DELETE", _url(registry, repository, digest))
    if response.status_code in (202, 200):
        return True
    if response.status_code == 404:
        return False
    raise DockerError(f"registry {registry}: deleting {repository}@{digest} failed ({response.status_code})")


def list_repositories(registry) -> list[str]:
    """Every repository of the registry (the catalog, followed page by page)."""
    registry = _of(registry)
    names, url = [], f"{registry.base}/v2/_catalog?n=1000"
    while url:
        response = _request(registry, "GET", url)
        response.raise_for_status()
        names += response.json().get("repositories") or []
        link = response.headers.get("Link", "")
        url = registry.base + link.split(";")[0].strip("<> ") if link else ""
    return sorted(set(names))


# ---------------------------------------------------------------------------------------- blobs

def blob_exists(registry, repository: str, digest: str) -> bool:
    registry = _of(registry)
    response = _request(registry, "HEAD", f"{registry.base}/v2/{repository}/blobs/{digest}")
    return response.status_code == 200


def _location(registry: Registry, response: requests.Response) -> str:
    location = response.headers["Location"]
    return location if location.startswith("http") else registry.base + location


def mount_blob(registry, repository: str, digest: str, source: str) -> bool:
    """Cross-repository mount of ``digest`` from ``source`` (no bytes move); False when it is not there."""
    registry = _of(registry)
    response = _request(registry, "POST", f"{registry.base}/v2/{repository}/blobs/uploads/",
                        params={"mount": digest, "from": source})
    if response.status_code == 201:
        return True
    if response.status_code == 202:  # the registry opened an upload instead: abandon it
        _request(registry, "DELETE", _location(registry, response))
        return False
    raise DockerError(f"registry {registry}: mounting {digest} into {repository} failed ({response.status_code})")


class _Counting:
    """A file wrapper that reports how many bytes were read, for upload progress."""

    def __init__(self, handle: BinaryIO, size: int, seen: Callable[[int], None]):
        self.handle, self.size, self.seen = handle, size, seen

    def __len__(self) -> int:  # requests sends Content-Length, not chunks (the registry wants one or the other)
        return self.size

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.seen(len(data))
        return data

    def __iter__(self):
        while data := self.read(CHUNK):
            yield data


def upload_blob(registry, repository: str, digest: str, data: BinaryIO | bytes, size: int,
                seen: Callable[[int], None] = lambda n: None) -> None:
    """Upload a blob in one monolithic PUT (streamed from ``data``), reporting bytes to ``seen``."""
    registry = _of(registry)
    opened = _request(registry, "POST", f"{registry.base}/v2/{repository}/blobs/uploads/")
    if opened.status_code != 202:
        raise DockerError(f"registry {registry}: cannot start an upload to {repository} ({opened.status_code})")
    location = _location(registry, opened)
    body = data if isinstance(data, bytes) else _Counting(data, size, seen)
    put = _request(registry, "PUT", location, timeout=UPLOAD_TIMEOUT, params={"digest": digest}, data=body,
                   headers={"Content-Type": "application/octet-stream"})
    if put.status_code != 201:
        raise DockerError(f"registry {registry}: upload of {digest} to {repository} failed ({put.status_code}: "
                          f"{put.text[:300]})")
    if isinstance(data, bytes):
        seen(size)


class Progress:
    """Push or pull progress as log lines: bytes done of total and layers, at most every ``every_s``."""

    def __init__(self, log, verb: str, total_bytes: int, total_layers: int, every_s: float = 2.0):
        self.log, self.verb, self.total, self.layers = log, verb, total_bytes, total_layers
        self.done = self.layers_done = 0
        self.every, self.last = every_s, time.monotonic()

    def bytes(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.last >= self.every:
            self.report()

    def layer(self) -> None:
        self.layers_done += 1

    def report(self) -> None:
        self.last = time.monotonic()
        self.log(f"{self.verb} {self.done / 2**20:.1f} of {self.total / 2**20:.1f} MiB "
                 f"({self.layers_done} of {self.layers} layers)")


def push_blobs(registry, repository: str, blobs: Iterable[tuple[str, int, object]], log,
               mount_from: Iterable[str] = ()) -> dict[str, str]:
    """Make every blob ``(digest, size, source)`` present in ``repository``: already there, mounted
    from one of ``mount_from``, or uploaded from ``source`` (a path, bytes, or None when it must be
    in the registry already). Returns ``digest → 'exists' | 'mounted' | 'uploaded'``."""
    registry = _of(registry)
    blobs = list(blobs)
    mount_from = list(mount_from)
    missing = [(d, s, src) for d, s, src in blobs if not blob_exists(registry, repository, d)]
    actions = {d: "exists" for d, _s, _src in blobs}
    to_send = []
    for digest, size, source in missing:
        if any(mount_blob(registry, repository, digest, other) for other in mount_from if other != repository):
            actions[digest] = "mounted"
        elif source is None:
            raise DockerError(f"registry {registry}: blob {digest} is neither in {repository} nor in "
                              f"{mount_from} and there is no copy to upload")
        else:
            to_send.append((digest, size, source))
    progress = Progress(log, "pushed", sum(s for _d, s, _src in to_send), len(to_send))
    for digest, size, source in to_send:
        if isinstance(source, (bytes, bytearray)):
            upload_blob(registry, repository, digest, bytes(source), size, progress.bytes)
        else:
            with open(source, "rb") as handle:
                upload_blob(registry, repository, digest, handle, size, progress.bytes)
        actions[digest] = "uploaded"
        progress.layer()
    if to_send:
        progress.report()
    return actions
