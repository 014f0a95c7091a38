"""Queries on the package index (no XML parsing): list, find by NEVRA, dependency closure."""

from __future__ import annotations

import re
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci import nevra as asci_nevra
from asci.errors import InvalidNevra
from asci.nevra import Nevra
from rpmrepo.errors import InvalidName
from rpmrepo.models import RpmPackage
from rpmrepo.store import check_repo_name

_CAPABILITY_NAME = re.compile(r"^\s*([^\s<>=()]+)")


def parse_nevra(text: str) -> Nevra:
    """Parse ``name-[epoch:]version-release.arch`` (``asci.nevra``), refused as :class:`InvalidName`."""
    try:
        return asci_nevra.parse_nevra(text)
    except InvalidNevra as exc:
        raise InvalidName(str(exc)) from None


def list_packages(db: Session, repo: str, include_retracted: bool = False) -> list[RpmPackage]:
    """The packages of ``repo``, sorted by name then id (publication order)."""
    query = select(RpmPackage).where(RpmPackage.repo == check_repo_name(repo))
    if not include_retracted:
        query = query.where(RpmPackage.retracted.is_(False))
    return list(db.scalars(query.order_by(RpmPackage.name, RpmPackage.id)))


def find_package(db: Session, repo: str, nevra: str | Nevra) -> RpmPackage | None:
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
    return db.scalars(query.order_by(RpmPackage.epoch)).first()


def find_by_filename(db: Session, repo: str, filename: str) -> RpmPackage | None:
    """The package stored as ``filename`` in ``repo``, or None."""
    return db.scalar(select(RpmPackage).where(RpmPackage.repo == repo, RpmPackage.filename == filename))


def capability_name(capability: str) -> str:
    """``mx-lib >= 1:2.0`` → ``mx-lib``."""
    match = _CAPABILITY_NAME.match(capability)
    return match.group(1) if match else capability.strip()


def dependency_closure(db: Session, repo: str, names: set[str]) -> set[str]:
    """Every package name reachable from ``names`` through requires → provides in ``repo``."""
    providers: dict[str, set[str]] = defaultdict(set)
    requires: dict[str, set[str]] = defaultdict(set)
    for package in db.scalars(select(RpmPackage).where(RpmPackage.repo == repo)):
        providers[package.name].add(package.name)
        for capability in package.provides or []:
            providers[capability_name(capability)].add(package.name)
        requires[package.name].update(capability_name(c) for c in package.requires or [])
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for capability in requires.get(name, ()):
            pending.extend(providers.get(capability, ()) - seen)
    return seen
