"""``asci env export ENV VERSION -o FILE``: a version as one self-contained OCI archive.

The image comes from the registry as it is stored there (the manifest's bytes unchanged, so the
digest stays the same); its records from the database (lock, SBOM, Dockerfile, build log, history),
the recipe from the recipes repository at the recorded commit, the RPMs from the repository's
``all`` view. Every byte is checked on the way (blob digests, RPM sha256s) and the file appears
only when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from asci.config import Settings
from asci.db import session_scope
from asci.progress import LogSink, discard
from builder import registry, versions
from builder.archive import oci
from builder.archive.recipes import recipe_text
from builder.errors import ArchiveError, VersionError
from builder.models import VersionStatus

FORMAT = "asci-version-archive"
SCHEMA = 1


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def version_record(row) -> dict:
    """The version's facts as ``asci/version.json`` holds them."""
    environment = row.environment
    return {
        "format": FORMAT, "schema": SCHEMA,
        "environment": {"name": environment.name, "beamline": environment.beamline,
                        "description": environment.description, "base_image": environment.base_image},
        "version": {"version": row.version, "status": row.status, "image_reference": row.image_reference,
                    "image_digest": row.image_digest, "image_id": row.image_id, "lock": row.lock,
                    "lock_digest": row.lock_digest, "sbom": row.sbom, "recipe_commit": row.recipe_commit,
                    "dockerfile": row.dockerfile, "build_log": row.build_log, "layers": row.layers,
                    "created_at": _iso(row.created_at), "finished_at": _iso(row.finished_at),
                    "became_current_at": _iso(row.became_current_at)},
    }


def _load(settings: Settings, name: str, version: str) -> dict:
    with session_scope(settings) as db:
        row = versions.get_version(db, name, version)
        if row.status != VersionStatus.SUCCEEDED or not row.image_digest:
            raise VersionError(f"{name} {version} is {row.status}; only a succeeded, pushed version is exported")
        return version_record(row)


def _rpm_files(settings: Settings, lock: dict) -> list[tuple[dict, Path]]:
    import rpmrepo

    folder = rpmrepo.repo_path(settings, lock["repo"], "all")
    found = []
    for pkg in lock["packages"]:
        path = folder / pkg["filename"]
        if not path.is_file():
            from builder.archive.restore import archive_rpm_path

            path = archive_rpm_path(settings, pkg["filename"])
        if not path.is_file():
            raise ArchiveError(f"{pkg['nevra']}: {pkg['filename']} is in neither repository {lock['repo']!r} "
                               "nor the archive repository")
        found.append((pkg, path))
    return found


def export_version(settings: Settings, name: str, version: str, target: Path, log: LogSink = discard) -> dict:
    """Write ``name`` ``version`` to ``target`` (an ``oci-archive``); returns figures of what was written."""
    target = Path(target)
    record = _load(settings, name, version)
    lock = record["version"]["lock"]
    recipe = recipe_text(settings, name, version, lock)
    rpms = _rpm_files(settings, lock)
    manifest, media_type, digest = registry.get_manifest(settings.registry, name, record["version"]["image_digest"])
    if digest != record["version"]["image_digest"]:
        raise ArchiveError(f"the registry serves {digest} for {name}@{record['version']['image_digest']}")
    document = json.loads(manifest)
    blobs = [document["config"], *document["layers"]]
    total = sum(b["size"] for b in blobs) + sum(p["size"] for p, _path in rpms)
    meter = oci.Meter(log, "exported", total)
    log(f"exporting {name} {version} ({digest}): {len(blobs)} image blobs and {len(rpms)} RPMs, "
        f"{total / 2**20:.1f} MiB")
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb") as handle:
            writer = oci.ArchiveWriter(handle)
            writer.add_bytes("oci-layout", json.dumps(oci.OCI_LAYOUT).encode())
            writer.add_bytes("index.json", oci.index_document(digest, len(manifest), media_type, version))
            writer.add_bytes(oci.VERSION_FILE, json.dumps(record, indent=2, sort_keys=True).encode())
            writer.add_bytes(oci.RECORDS + "lock.json", json.dumps(lock, indent=2, sort_keys=True).encode())
            writer.add_bytes(oci.RECORDS + "sbom.json", json.dumps(record["version"]["sbom"], indent=2).encode())
            writer.add_bytes(oci.RECORDS + "Dockerfile", record["version"]["dockerfile"].encode())
            writer.add_bytes(oci.RECORDS + "build.log", record["version"]["build_log"].encode())
            writer.add_bytes(oci.RECORDS + "recipe.yaml", recipe.encode())
            for pkg, path in rpms:
                with open(path, "rb") as source:
                    got = writer.add_stream(oci.RPM_FOLDER + pkg["filename"], source, pkg["size"], meter.add)
                if got != pkg["sha256"]:
                    raise ArchiveError(f"{path}: sha256 {got}, the lock says {pkg['sha256']}")
            for blob in blobs:
                with registry.open_blob(settings.registry, name, blob["digest"]) as response:
                    response.raw.decode_content = False
                    got = writer.add_stream(oci.blob_path(blob["digest"]), response.raw, blob["size"], meter.add)
                if f"sha256:{got}" != blob["digest"]:
                    raise ArchiveError(f"the registry's blob {blob['digest']} has sha256:{got}")
            writer.add_bytes(oci.blob_path(digest), manifest)
            writer.add_sums()
            writer.close()
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    meter.report()
    size = target.stat().st_size
    log(f"wrote {target}: {size / 2**20:.1f} MiB")
    return {"environment": name, "version": version, "digest": digest, "archive_bytes": size,
            "image_bytes": sum(b["size"] for b in blobs), "rpms": len(rpms)}
