"""Queries on the package index (no XML parsing): list, find by NEVRA, parse NEVRA strings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from rpmrepo.errors import InvalidName
from rpmrepo.models import RpmPackage
from rpmrepo.store import check_repo_name

_NEVRA_RE = re.compile(r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-:]+)\.(?P<arch>[a-z0-9_]+)$")


@dataclass(frozen=True)
class Nevra:
    """A parsed ``name-[epoch:]version-release.arch``."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str

    def __str__(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"


def parse_nevra(text: str) -> Nevra:
    """Parse ``name-[epoch:]version-release.arch`` (a trailing ``.rpm`` is accepted)."""
    text = text.strip()
    if text.endswith(".rpm"):
        text = text[:-4]
    match = _NEVRA_RE.match(text)
    if not match:
        raise InvalidName(f"{text!r} is not a NEVRA (name-[epoch:]version-release.arch)")
    return Nevra(match["name"], int(match["epoch"] or 0), match["version"], match["release"], match["arch"])


def list_packages(session: Session, repo: str, include_retracted: bool = False) -> list[RpmPackage]:
    """The packages of ``repo``, sorted by name then id (publication order)."""
    query = select(RpmPackage).where(RpmPackage.repo == check_repo_name(repo))
    if not include_retracted:
        query = query.where(RpmPackage.retracted.is_(False))
    return list(session.scalars(query.order_by(RpmPackage.name, RpmPackage.id)))


def find_package(session: Session, repo: str, nevra: str | Nevra) -> RpmPackage | None:
    """The package of ``repo`` with this NEVRA (retracted or not), or None.

    Without an explicit epoch, a NEVRA matches whatever epoch the package has.
    """
    wanted = parse_nevra(nevra) if isinstance(nevra, str) else nevra
    explicit_epoch = isinstance(nevra, Nevra) or ":" in str(nevra)
    query = select(RpmPackage).where(
        RpmPackage.repo == check_repo_name(repo), RpmPackage.name == wanted.name,
        RpmPackage.version == wanted.version, RpmPackage.release == wanted.release, RpmPackage.arch == wanted.arch,
    )
    if explicit_epoch:
        query = query.where(RpmPackage.epoch == wanted.epoch)
    return session.scalars(query.order_by(RpmPackage.epoch)).first()


def find_by_filename(session: Session, repo: str, filename: str) -> RpmPackage | None:
    """The package stored as ``filename`` in ``repo``, or None."""
    return session.scalar(select(RpmPackage).where(RpmPackage.repo == repo, RpmPackage.filename == filename))
