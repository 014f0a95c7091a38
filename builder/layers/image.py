"""The image config and the manifest of a re-layered image (Docker image manifest v2, schema 2)."""

from __future__ import annotations

import hashlib
import json

from builder.layers.tarball import LayerBlob

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# The fields of ``docker inspect``'s Config that belong in an image config (not Hostname, Image...).
IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
                     "StopSignal", "Healthcheck", "Shell", "OnBuild")


def canonical(document) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def runtime_config(inspected: dict) -> dict:
    """The ``config`` section of an image config from ``docker inspect``'s ``Config`` of the built image
    (it already holds the Dockerfile's ENV, LABEL and the base's entrypoint)."""
    return {k: v for k, v in (inspected or {}).items() if k in IMAGE_CONFIG_KEYS and v}


def build_config(base_config: dict, runtime: dict, layers: list[tuple[str, str]], created: str) -> bytes:
    """The base's config (architecture, os, its diff_ids and history) with our layers appended as
    ``(diff_id, created_by)`` and ``runtime`` as the container config."""
    config = {k: v for k, v in base_config.items() if k not in ("container", "container_config", "docker_version")}
    config["config"] = runtime
    config["created"] = created
    config["rootfs"] = {"type": "layers", "diff_ids": list(base_config["rootfs"]["diff_ids"]) + [d for d, _ in layers]}
    config["history"] = list(base_config.get("history", [])) + [
        {"created": created, "created_by": by, "comment": "asci layer"} for _, by in layers]
    return canonical(config)


def build_manifest(config: bytes, layers: list[LayerBlob]) -> bytes:
    return canonical({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "size": len(config), "digest": digest_of(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "size": b.size, "digest": b.digest} for b in layers],
    })
