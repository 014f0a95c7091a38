"""``asci env import FILE``: put a verified version archive back into this platform.

Into a platform that lost the version's manifest or blobs (same record, same digest), or into an
empty one (a fresh data directory and registry): the environment and the version row with its
history fields are recorded, the image's blobs and manifest pushed (unchanged bytes, so the same
digest), and the locked RPMs published into the ``archive`` repository when the lock's own
repository does not hold them, so ``asci env reproduce`` still rebuilds the same package set.
The archive is checked whole before anything is written, and conflicts are refused.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from asci.config import Settings
from asci.db import session_scope
from asci.progress import LogSink, discard
from builder import registry
from builder.archive import oci
from builder.archive.recipes import kept_recipe_path
from builder.archive.verify import Checked, verify_archive
from builder.errors import ArchiveError
from builder.models import Environment, EnvironmentVersion, VersionStatus

ARCHIVE_REPO = "archive"  # the repository imported versions' RPMs go to (never resolved by new builds)


@dataclass
class Imported:
    """What an import did."""

    environment: str
    version: str
    digest: str
    reference: str
    recorded: str  # "created" | "restored" (the row was there)
    blobs_uploaded: int
    blobs_present: int
    rpms_published: int

    def lines(self) -> list[str]:
        return [f"imported {self.environment} {self.version} as {self.reference}@{self.digest}",
                f"  version record {self.recorded}; {self.blobs_uploaded} blobs uploaded, "
                f"{self.blobs_present} already in the registry; {self.rpms_published} RPMs put into the "
                f"{ARCHIVE_REPO!r} repository"]


def archive_rpm_path(settings: Settings, filename: str) -> Path:
    """Where an imported RPM lies (the archive repository's ``all`` view)."""
    import rpmrepo

    return rpmrepo.repo_path(settings, ARCHIVE_REPO, "all") / filename


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _check_fits(settings: Settings, checked: Checked) -> str:
    """"created" or "restored"; ArchiveError when this platform holds another version under that name."""
    version = checked.record["version"]
    with session_scope(settings) as db:
        row = db.scalar(select(EnvironmentVersion).join(Environment).where(
            Environment.name == checked.environment, EnvironmentVersion.version == checked.version))
        if row is not None and (row.lock_digest != version["lock_digest"] or
                                (row.image_digest and row.image_digest != checked.digest)):
            raise ArchiveError(f"{checked.environment} {checked.version} here is another build (lock "
                               f"sha256:{row.lock_digest[:12]}, image {row.image_digest[:19]}) than the archive's")
        recorded = "restored" if row is not None else "created"
    tagged = registry.manifest_digest(settings.registry, checked.environment, checked.version)
    if tagged is not None and tagged != checked.digest:
        raise ArchiveError(f"the registry's {checked.environment}:{checked.version} is {tagged}, "
                           f"not the archive's {checked.digest}")
    return recorded


def _needs_archive(settings: Settings, lock: dict) -> list[dict]:
    """The locked packages that the lock's repository does not hold with their sha256 (on disk too)."""
    import rpmrepo
    from asci.nevra import Nevra

    missing = []
    with session_scope(settings) as db:
        for pkg in lock["packages"]:
            row = rpmrepo.find_package(db, lock["repo"], Nevra.of(pkg))
            on_disk = rpmrepo.repo_path(settings, lock["repo"], "all") / pkg["filename"]
            if row is None or row.sha256 != pkg["sha256"] or not on_disk.is_file():
                missing.append(pkg)
    return missing


def _transfer(settings: Settings, checked: Checked, rpm_dir: Path, wanted_rpms: set[str], log: LogSink) -> tuple[int, int]:
    """Second pass: upload the blobs the registry lacks, extract the wanted RPMs. Returns (uploaded, present)."""
    target = registry.connect(settings)
    name = checked.environment
    present = {d for d in checked.blobs if registry.blob_exists(target, name, d)}
    meter = oci.Meter(log, "imported", sum(s for d, s in checked.blobs.items() if d not in present))
    uploaded = 0
    with open(checked.path, "rb") as handle:
        for member, size, stream in oci.members(handle):
            digest = oci.digest_of_path(member)
            if digest in checked.blobs and digest not in present:
                registry.upload_blob(target, name, digest, stream, size, meter.add)
                uploaded += 1
            elif member.startswith(oci.RPM_FOLDER) and member[len(oci.RPM_FOLDER):] in wanted_rpms:
                with open(rpm_dir / member[len(oci.RPM_FOLDER):], "wb") as out:
                    while data := stream.read(oci.CHUNK):
                        out.write(data)
    meter.report()
    return uploaded, len(present)


def _record(settings: Settings, checked: Checked, reference: str) -> None:
    facts, version = checked.record["environment"], checked.record["version"]
    with session_scope(settings) as db:
        environment = db.scalar(select(Environment).where(Environment.name == facts["name"]))
        if environment is None:
            environment = Environment(name=facts["name"], beamline=facts.get("beamline", ""),
                                      description=facts.get("description", ""), base_image=facts.get("base_image", ""))
            db.add(environment)
            db.flush()
        row = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == environment.id,
                                                         EnvironmentVersion.version == version["version"]))
        if row is None:
            row = EnvironmentVersion(environment_id=environment.id, version=version["version"])
            db.add(row)
        row.status, row.image_reference, row.image_digest = VersionStatus.SUCCEEDED, reference, checked.digest
        row.image_id, row.lock, row.lock_digest = version.get("image_id", ""), version["lock"], version["lock_digest"]
        row.sbom, row.recipe_commit = version.get("sbom") or [], version.get("recipe_commit", "")
        row.dockerfile, row.build_log, row.layers = version.get("dockerfile", ""), version.get("build_log", ""), \
            version.get("layers") or {}
        row.created_at = _when(version.get("created_at")) or row.created_at
        row.finished_at = _when(version.get("finished_at"))
        row.became_current_at = _when(version.get("became_current_at"))
        row.deleted_at, row.error = None, ""
        if environment.current_version is None:
            environment.current_version = version["version"]


def import_archive(settings: Settings, path: Path, log: LogSink = discard) -> Imported:
    """Verify the archive at ``path``, then restore its version here (see the module's description)."""
    import rpmrepo

    checked = verify_archive(path, log)
    log(f"verified {checked.environment} {checked.version} ({checked.digest})")
    recorded = _check_fits(settings, checked)
    lock = checked.record["version"]["lock"]
    missing = _needs_archive(settings, lock)
    with tempfile.TemporaryDirectory(prefix="asci-import-") as folder:
        uploaded, present = _transfer(settings, checked, Path(folder), {p["filename"] for p in missing}, log)
        if missing:
            rpmrepo.create_repo(settings, ARCHIVE_REPO, exist_ok=True)
            rpmrepo.publish(settings, [Path(folder) / p["filename"] for p in missing], repo=ARCHIVE_REPO)
            log(f"published {len(missing)} RPMs into the {ARCHIVE_REPO!r} repository")
    target = registry.connect(settings)
    digest = registry.put_manifest(target, checked.environment, checked.version, checked.manifest, checked.media_type)
    if digest != checked.digest:
        raise ArchiveError(f"the registry stored {digest}, the archive's manifest is {checked.digest}")
    kept = kept_recipe_path(settings, checked.environment, checked.version)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(checked.recipe)
    reference = f"{settings.registry}/{checked.environment}:{checked.version}"
    _record(settings, checked, reference)
    with session_scope(settings) as db:
        environment = db.scalar(select(Environment).where(Environment.name == checked.environment))
        is_current = environment.current_version == checked.version
    if is_current and registry.manifest_digest(settings.registry, checked.environment, "latest") is None:
        registry.put_manifest(target, checked.environment, "latest", checked.manifest, checked.media_type)
    return Imported(checked.environment, checked.version, digest, reference, recorded, uploaded, present, len(missing))
