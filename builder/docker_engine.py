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


def push_image(client: docker.DockerClient, repository: str, tag: str, log: LogSink) -> str:
    """Push ``repository:tag``; returns the manifest digest the registry reported."""
    try:
        aux = consume_stream(client.api.push(repository, tag=tag, stream=True, decode=True), log)
    except APIError as exc:
        raise DockerError(f"push of {repository}:{tag} failed: {exc.explanation}") from None
    digest = aux.get("Digest")
    if not digest:
        raise DockerError(f"push of {repository}:{tag} reported no digest")
    return digest
