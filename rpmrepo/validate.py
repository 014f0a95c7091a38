"""Validation of a candidate package before anything is stored.

``stage_file`` copies the input (never following an uploaded name) into an incoming folder, with
the size limit applied while copying; ``validate`` reads the header, checks digests, signature,
architecture and names, and computes the sha256 of exactly the bytes that will be stored.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from asci.config import Settings
from rpmrepo import rpmheader
from rpmrepo.errors import InvalidPackage, PackageTooLarge
from rpmrepo.rpmheader import RpmHeader

_NAME_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+\-]{0,199}")
_VR_RE = re.compile(r"[A-Za-z0-9_+~^][A-Za-z0-9._+~^]{0,99}")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    """A validated package, staged at ``path`` (a file ASCI created), ready to be published."""

    path: Path
    label: str
    header: RpmHeader
    sha256: str
    size: int

    @property
    def nevra(self) -> str:
        return self.header.nevra

    @property
    def filename(self) -> str:
        return self.header.filename


def incoming_dir(settings: Settings) -> Path:
    """A fresh private folder for staged uploads (same file system as the repositories)."""
    base = settings.repos_dir / ".incoming"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="batch-", dir=base))


def stage_stream(settings: Settings, stream: BinaryIO, folder: Path, label: str) -> Path:
    """Copy ``stream`` into ``folder`` under a generated name, refusing more than the size limit."""
    limit = settings.repo_max_rpm_bytes
    target = folder / f"{uuid.uuid4().hex}.rpm"
    written = 0
    with target.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                out.close()
                target.unlink(missing_ok=True)
                raise PackageTooLarge(f"{label}: larger than the limit of {limit} bytes")
            out.write(chunk)
    return target


def stage_file(settings: Settings, source: Path, folder: Path) -> Path:
    """Copy a local file into ``folder`` (size checked before and while copying)."""
    label = source.name
    if not source.is_file():
        raise InvalidPackage(f"{source}: no such file")
    if source.stat().st_size > settings.repo_max_rpm_bytes:
        raise PackageTooLarge(f"{label}: larger than the limit of {settings.repo_max_rpm_bytes} bytes")
    with source.open("rb") as stream:
        return stage_stream(settings, stream, folder, label)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_names(header: RpmHeader, label: str) -> None:
    if not _NAME_RE.fullmatch(header.name):
        raise InvalidPackage(f"{label}: package name {header.name!r} is not usable as a file name")
    for part, value in (("version", header.version), ("release", header.release)):
        if not _VR_RE.fullmatch(value):
            raise InvalidPackage(f"{label}: {part} {value!r} is not usable as a file name")
    if not re.fullmatch(r"[a-z0-9_]{1,32}", header.arch):
        raise InvalidPackage(f"{label}: architecture {header.arch!r} is malformed")


def validate(settings: Settings, staged: Path, label: str, dbpath: Path) -> Candidate:
    """Check a staged file; raises :class:`InvalidPackage` with a message naming ``label``."""
    size = staged.stat().st_size
    if size > settings.repo_max_rpm_bytes:
        raise PackageTooLarge(f"{label}: larger than the limit of {settings.repo_max_rpm_bytes} bytes")
    header = rpmheader.read_header(staged, dbpath, label)
    if header.source_package:
        raise InvalidPackage(f"{label}: source packages (.src.rpm) are not accepted")
    _check_names(header, label)
    if header.arch not in settings.repo_allowed_arches:
        allowed = ", ".join(settings.repo_allowed_arches)
        raise InvalidPackage(f"{label}: architecture {header.arch!r} is not allowed (allowed: {allowed})")
    rpmheader.verify(staged, dbpath, label, require_signature=settings.repo_require_signature, signed=header.signed)
    return Candidate(path=staged, label=label, header=header, sha256=sha256_of(staged), size=size)


def keyring(settings: Settings, folder: Path) -> Path:
    """A private rpm database inside ``folder`` holding the configured GPG keys."""
    dbpath = folder / "rpmdb"
    dbpath.mkdir(exist_ok=True)
    if settings.repo_require_signature:
        if not settings.repo_gpg_keys:
            raise InvalidPackage("signatures are required but no GPG keys are configured (repo_gpg_keys)")
        rpmheader.import_keys(dbpath, settings.repo_gpg_keys)
    return dbpath


def discard(folder: Path) -> None:
    """Remove a staging folder and everything in it."""
    shutil.rmtree(folder, ignore_errors=True)
