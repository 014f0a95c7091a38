"""One wrapper for the Docker calls the builder makes (build, import, push, inspect).

docker-py reports build and push failures inside the JSON stream without
raising; :func:`consume_stream` turns those into :class:`DockerError`.
"""

from __future__ import annotations

from typing import Iterable

import docker
from docker.errors import APIError, DockerException, ImageNotFound

from asci.progress import LogSink
from builder.errors import DockerError



def client_for(base_url: str = "unix:///var/run/docker.sock", timeout: int = 600) -> docker.DockerClient:
    """A Docker client for ``base_url``; a daemon that does not answer is a DockerError."""
    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerError(f"Docker daemon at {base_url} does not answer: {exc}") from None
    return client


def consume_stream(chunks: Iterable[dict], log: LogSink) -> dict:
    """Send a build/push/pull stream to ``log``; raise on an error inside it.

    Returns the last ``aux`` object seen (the image ID of a build, the digest
    of a push).
    """
    aux: dict = {}
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "unknown error")
            log(f"ERROR: {message.strip()}")
            raise DockerError(message.strip())
        if "stream" in chunk:
            text = chunk["stream"].rstrip("\n")
            if text:
                log(text)
        elif "status" in chunk:
            progress = chunk.get("id")
            if "progressDetail" not in chunk or not chunk.get("progressDetail"):
                log(f"{progress}: {chunk['status']}" if progress else chunk["status"])
        if "aux" in chunk:
            aux = chunk["aux"]
    return aux


def image_exists(client: docker.DockerClient, reference: str) -> bool:
    """True when the daemon has an image called ``reference``."""
    try:
        client.images.get(reference)
        return True
    except ImageNotFound:
        return False
    except APIError as exc:
        raise DockerError(f"cannot inspect {reference}: {exc.explanation}") from None


def build_image(client: docker.DockerClient, context_dir: str, tag: str, log: LogSink,
                buildargs: dict | None = None, labels: dict | None = None) -> str:
    """Build ``context_dir`` with host networking, tag it, return the image ID."""
    try:
        stream = client.api.build(path=context_dir, tag=tag, network_mode="host", rm=True, forcerm=True,
                                  decode=True, buildargs=buildargs or {}, labels=labels or {}, pull=False)
        consume_stream(stream, log)
    except APIError as exc:
        raise DockerError(f"build of {tag} failed: {exc.explanation}") from None
    return client.images.get(tag).id


def import_rootfs(client: docker.DockerClient, tarball: str, repository: str, tag: str) -> str:
    """``docker import`` a root file system tarball; returns the image ID."""
    try:
        result = client.api.import_image(src=tarball, repository=repository, tag=tag)
    except APIError as exc:
        raise DockerError(f"docker import of {tarball} failed: {exc.explanation}") from None
    if isinstance(result, str) and '"error"' in result:
        raise DockerError(f"docker import of {tarball} failed: {result.strip()}")
    return client.images.get(f"{repository}:{tag}").id


def push_image(client: docker.DockerClient, repository: str, tag: str, log: LogSink,
               auth: tuple[str, str] | None = None) -> str:
    """Push ``repository:tag`` (with the registry credentials ``auth``, when given); returns the
    manifest digest the registry reported."""
    auth_config = {"username": auth[0], "password": auth[1]} if auth else None
    try:
        aux = consume_stream(client.api.push(repository, tag=tag, stream=True, decode=True,
                                             auth_config=auth_config), log)
    except APIError as exc:
        raise DockerError(f"push of {repository}:{tag} failed: {exc.explanation}") from None
    digest = aux.get("Digest")
    if not digest:
        raise DockerError(f"push of {repository}:{tag} reported no digest")
    return digest


def pull_image(client: docker.DockerClient, reference: str, log: LogSink, every_s: float = 2.0):
    """Pull ``reference`` (``repo@sha256:...`` or ``repo:tag``) anonymously, logging bytes done of total
    (at most every ``every_s``) and how many layers were already there; returns the image."""
    import time

    layers: dict[str, dict] = {}
    last = time.monotonic()

    def report() -> None:
        total = sum(item.get("total", 0) for item in layers.values())
        done = sum(item.get("current", 0) for item in layers.values())
        present = sum(1 for item in layers.values() if item.get("present"))
        log(f"pulled {done / 2**20:.1f} of {total / 2**20:.1f} MiB ({len(layers) - present} layers to download, "
            f"{present} already here)")

    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(reference)
    try:
        for chunk in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise DockerError(f"pull of {reference} failed: {chunk['error']}")
            layer, status = chunk.get("id", ""), chunk.get("status", "")
            if len(layer) != 12 or not all(c in "0123456789abcdef" for c in layer):
                continue  # not a layer line ("Pulling from", "Digest", "Status")
            item = layers.setdefault(layer, {})
            detail = chunk.get("progressDetail") or {}
            if status == "Already exists":
                item["present"] = True
            elif status == "Downloading" and detail.get("total"):
                item["current"], item["total"] = detail.get("current", 0), detail["total"]
            elif status in ("Download complete", "Pull complete") and "total" in item:
                item["current"] = item["total"]
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                report()
    except APIError as exc:
        raise DockerError(f"pull of {reference} failed: {exc.explanation}") from None
    report()
    return client.images.get(reference)
