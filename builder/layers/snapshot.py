"""Read what a build added, through containers: listings (GNU find), rpm owners, and a tar of the
changed paths (GNU tar), each run with the entrypoint replaced, no network and a label."""

from __future__ import annotations

import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from docker.errors import APIError, ImageNotFound

from asci.streams import ChunkReader
from builder.errors import DockerError
from builder.layers import owners as rpm_owners
from builder.layers import tree as trees

LABEL = "asci.builder"
CHUNK = 1 << 20
# Written inside the container and copied out (measured faster here than streaming standard output
# through an attached socket).
TAR_COMMAND = ("tar --create --file=/tmp/asci-layer.tar --xattrs --xattrs-include='*' --numeric-owner -C / "
               "--no-recursion --null --files-from=/tmp/asci-paths")


def _inputs(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_script(client, image: str, script: str, outputs: dict[str, Path | None], inputs: dict[str, bytes] | None = None,
               timeout: int = 600, stdout_to: Path | None = None) -> dict[str, bytes]:
    """Run ``sh -c script`` in ``image`` as root; copy ``inputs`` (``/tmp/NAME``) in first and the files
    ``outputs`` (absolute path → local file to stream into, or None for bytes returned) out after;
    ``stdout_to``: stream the script's standard output into that local file."""
    try:
        container = client.containers.create(image, entrypoint=["/bin/sh", "-c"], command=[script], user="0:0",
                                             network_mode="none", labels={LABEL: "relayer"})
    except ImageNotFound:
        raise DockerError(f"image {image} does not exist") from None
    except APIError as exc:
        raise DockerError(f"cannot run {image}: {exc.explanation}") from None
    try:
        if inputs:
            container.put_archive("/tmp", _inputs(inputs))
        if stdout_to is not None:
            stream = client.api.attach(container.id, stdout=True, stderr=False, stream=True)
            container.start()
            with open(stdout_to, "wb") as out:
                for chunk in stream:
                    out.write(chunk)
        else:
            container.start()
        status = container.wait(timeout=timeout).get("StatusCode", 1)
        if status != 0:
            output = container.logs(stdout=stdout_to is None, stderr=True).decode(errors="replace")
            raise DockerError(f"{script.split()[0]} in {image} failed ({status}): {output.strip()[-400:]}")
        result = {}
        for path, local in outputs.items():
            stream, _stat = container.get_archive(path, chunk_size=CHUNK)
            result[path] = _unwrap(stream, local)
        return result
    except APIError as exc:
        raise DockerError(f"reading {image} failed: {exc.explanation}") from None
    finally:
        container.remove(force=True)


def _unwrap(stream, local: Path | None) -> bytes:
    """The single file inside an engine archive stream: into ``local``, or returned."""
    with tarfile.open(fileobj=io.BufferedReader(ChunkReader(stream), CHUNK), mode="r|") as outer:
        for member in outer:
            source = outer.extractfile(member)
            if source is None:
                continue
            if local is None:
                return source.read()
            with open(local, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
            return b""
    raise DockerError("the engine's archive held no file")


def listing(client, image: str) -> dict[str, trees.Stat]:
    """``path → Stat`` of every file of ``image``."""
    out = run_script(client, image, trees.LISTING_COMMAND + " >/tmp/asci-listing", {"/tmp/asci-listing": None})
    return trees.parse_listing(out["/tmp/asci-listing"])


def listing_of(client, image: str, paths: set[str]) -> dict[str, trees.Stat]:
    """The listing of just ``paths`` of ``image`` (absent ones are left out)."""
    data = b"".join(b"/" + p.encode("utf-8", "surrogateescape") + b"\0" for p in sorted(paths))
    fields = trees.LISTING_FIELDS
    script = (f"xargs -0 -a /tmp/asci-paths sh -c 'find \"$@\" -maxdepth 0 -printf \"{fields}\" 2>/dev/null' _ "
              ">/tmp/asci-listing; true")
    out = run_script(client, image, script, {"/tmp/asci-listing": None}, {"asci-paths": data})
    return trees.parse_listing(out["/tmp/asci-listing"])


def listing_and_owners(client, image: str) -> tuple[dict[str, trees.Stat], rpm_owners.Owners]:
    script = f"{trees.LISTING_COMMAND} >/tmp/asci-listing && {{ {rpm_owners.QUERY_COMMAND}; }} >/tmp/asci-owners"
    out = run_script(client, image, script, {"/tmp/asci-listing": None, "/tmp/asci-owners": None})
    return (trees.parse_listing(out["/tmp/asci-listing"]),
            rpm_owners.parse_owners(out["/tmp/asci-owners"].decode("utf-8", "surrogateescape")))


_BASE_LISTINGS: dict[tuple[str, str], dict[str, trees.Stat]] = {}


def base_listing(client, image: str) -> dict[str, trees.Stat]:
    """The listing of a base image, kept for as long as the engine keeps that image's layers (the key
    holds the storage location of its top layer: a re-pulled image gets new files, with new ctimes)."""
    attrs = client.images.get(image).attrs
    key = (attrs["Id"], json.dumps(attrs.get("GraphDriver") or {}, sort_keys=True))
    if key not in _BASE_LISTINGS:
        _BASE_LISTINGS.clear()
        _BASE_LISTINGS[key] = listing(client, image)
    return _BASE_LISTINGS[key]


def snapshot(client, base_image: str, built_image: str, workdir: Path) -> tuple[trees.Tree, rpm_owners.Owners]:
    """The tree ``built_image`` adds over ``base_image`` and its rpm owners."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        base_future = pool.submit(base_listing, client, base_image)
        built, owners = listing_and_owners(client, built_image)
        base = base_future.result()
    changes = trees.diff_listings(base, built)
    paths = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in changes.changed)
    tar_path = workdir / "added.tar"
    if changes.changed:
        run_script(client, built_image, TAR_COMMAND, {"/tmp/asci-layer.tar": tar_path}, {"asci-paths": paths})
    else:
        with tarfile.open(tar_path, "w"):
            pass
    return trees.load_tree(tar_path, changes, built), owners
