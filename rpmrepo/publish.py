"""Publishing, retracting and re-indexing: the only code that changes a repository.

Order of a publish (all-or-nothing for the whole batch):

1. copy each input into ``.incoming/`` under a generated name (size limit applied) and validate
   the copy (header, digests, signature, architecture) - outside the lock;
2. under the repository lock: classify each package as new, already published (same NEVRA and
   bytes: a no-op) or conflicting (same NEVRA, other bytes: :class:`ConflictError`, nothing done);
3. hard-link the new files into ``all/`` and ``current/``, add index rows, regenerate metadata
   once for the batch, record one ``publish`` event, commit. Any failure removes the new files,
   puts the previous metadata back and rolls the database back.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from asci.config import Settings
from asci.db import session_scope, utcnow
from rpmrepo import metadata
from rpmrepo.errors import ConflictError, InvalidPackage, NotFound, RepoError
from rpmrepo.events import record_event
from rpmrepo.index import find_by_filename, find_package, parse_nevra
from rpmrepo.models import RepoEvent, RpmPackage
from rpmrepo.rpmheader import read_header
from rpmrepo.store import RepoLayout, repo_lock
from rpmrepo.validate import Candidate, discard, incoming_dir, keyring, sha256_of, stage_file, validate

PUBLISHED = "published"
ALREADY = "already published"


@dataclass(frozen=True)
class PublishedPackage:
    """The outcome for one input file."""

    nevra: str
    filename: str
    sha256: str
    size: int
    status: str  # PUBLISHED or ALREADY

    def as_dict(self) -> dict[str, Any]:
        return {"nevra": self.nevra, "filename": self.filename, "sha256": self.sha256, "size": self.size,
                "status": self.status}


@dataclass
class PublishResult:
    """What a publish did: per-package outcomes, the new metadata revision and the event id (None for a no-op)."""

    repo: str
    packages: list[PublishedPackage] = field(default_factory=list)
    revision: str | None = None
    event_id: int | None = None

    @property
    def published(self) -> list[PublishedPackage]:
        return [p for p in self.packages if p.status == PUBLISHED]

    @property
    def already(self) -> list[PublishedPackage]:
        return [p for p in self.packages if p.status == ALREADY]

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "revision": self.revision, "event_id": self.event_id,
                "packages": [p.as_dict() for p in self.packages]}


def _user_id(user: Any) -> int | None:
    if user is None or isinstance(user, int):
        return user
    return user.id


def publish(settings: Settings, paths: Iterable[str | Path], repo: str | None = None, user: Any = None) -> PublishResult:
    """Publish local RPM files into ``repo`` (default: ``settings.default_repo``).

    ``user`` is a :class:`asci.accounts.User` or user id recorded as publisher (or None).
    Raises :class:`InvalidPackage`, :class:`ConflictError`, ... and then changes nothing.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InvalidPackage("no package given")
    RepoLayout.of(settings, repo)  # refuse a bad repository name before copying anything
    folder = incoming_dir(settings)
    try:
        staged = [(stage_file(settings, path, folder), path.name) for path in paths]
        return publish_staged(settings, staged, folder, repo=repo, user=user)
    finally:
        discard(folder)


def publish_staged(settings: Settings, staged: list[tuple[Path, str]], folder: Path, repo: str | None = None,
                   user: Any = None) -> PublishResult:
    """Publish files already copied into ``folder`` (from :func:`rpmrepo.validate.incoming_dir`).

    ``staged`` pairs each staged path with a label for messages (the client's file name, never a path).
    """
    layout = RepoLayout.of(settings, repo)
    if not staged:
        raise InvalidPackage("no package given")
    dbpath = keyring(settings, folder)
    candidates = [validate(settings, path, label, dbpath) for path, label in staged]
    with repo_lock(layout, settings.repo_lock_timeout_s):
        with session_scope(settings) as db:
            return _publish_locked(db, layout, candidates, _user_id(user))


def _classify(db: Session, layout: RepoLayout, candidates: list[Candidate]):
    new: list[Candidate] = []
    relink: list[Candidate] = []
    outcomes: list[PublishedPackage] = []
    batch: dict[str, Candidate] = {}
    for cand in candidates:
        outcome = PublishedPackage(cand.nevra, cand.filename, cand.sha256, cand.size, PUBLISHED)
        earlier = batch.get(cand.filename)
        if earlier is not None:
            if earlier.sha256 != cand.sha256 or earlier.nevra != cand.nevra:
                raise ConflictError(f"{cand.label}: {cand.nevra} is given twice with different content")
            continue
        batch[cand.filename] = cand
        row = find_by_filename(db, layout.name, cand.filename)
        on_disk = layout.all_dir / cand.filename
        if row is not None:
            existing_sha, existing_nevra = row.sha256, row.nevra
        elif on_disk.is_file():
            existing_sha, existing_nevra = sha256_of(on_disk), None
        else:
            new.append(cand)
            outcomes.append(outcome)
            continue
        if existing_sha != cand.sha256 or (existing_nevra is not None and existing_nevra != cand.nevra):
            raise ConflictError(
                f"{cand.label}: {existing_nevra or cand.nevra} is already published in {layout.name!r} with "
                f"different content (sha256 {existing_sha[:16]}..., this file {cand.sha256[:16]}...); "
                "published packages are never replaced: publish a new release instead"
            )
        if row is None:  # file present but not indexed: repair the index
            db.add(_row(layout.name, cand, None))
        elif not on_disk.is_file():  # indexed but the file went missing: put the same bytes back
            relink.append(cand)
        outcomes.append(PublishedPackage(cand.nevra, cand.filename, cand.sha256, cand.size, ALREADY))
    return new, relink, outcomes


def _row(repo: str, cand: Candidate, user_id: int | None) -> RpmPackage:
    header = cand.header
    return RpmPackage(
        repo=repo, name=header.name, epoch=header.epoch, version=header.version, release=header.release,
        arch=header.arch, filename=cand.filename, sha256=cand.sha256, size=cand.size, buildtime=header.buildtime,
        summary=header.summary, requires=list(header.requires), provides=list(header.provides),
        published_at=utcnow(), published_by_id=user_id, retracted=False, retracted_at=None,
    )


def _has_retracted(db: Session, repo: str) -> bool:
    query = select(RpmPackage.id).where(RpmPackage.repo == repo, RpmPackage.retracted.is_(True)).limit(1)
    return db.scalar(query) is not None


def _commit_with_metadata(db: Session, layout: RepoLayout, kind: str, nevras: list[str], *,
                          separate_current: bool, full: bool = False) -> tuple[int, RepoEvent]:
    """Regenerate the metadata, record a ``kind`` event and commit: ``(revision, event)``.

    When recording or committing fails the previous metadata is put back and the error propagates
    (the caller rolls the database and its files back). Old metadata is the caller's to prune after.
    """
    swap = metadata.regenerate(layout, separate_current=separate_current, full=full)
    try:
        event = record_event(db, layout.name, kind, nevras, swap.revision)
        db.commit()
    except BaseException:
        swap.undo()
        raise
    return swap.revision, event


def _publish_locked(db: Session, layout: RepoLayout, candidates: list[Candidate], user_id: int | None) -> PublishResult:
    layout.create()
    new, relink, outcomes = _classify(db, layout, candidates)
    result = PublishResult(repo=layout.name, packages=outcomes)
    if not new and not relink:
        db.commit()
        return result
    added: list[Path] = []
    try:
        for cand in new + relink:
            for folder in (layout.all_dir, layout.current_dir):
                target = folder / cand.filename
                if folder is layout.current_dir and cand in relink:
                    row = find_by_filename(db, layout.name, cand.filename)
                    if row is not None and row.retracted:
                        continue
                if not target.exists():
                    os.link(cand.path, target)
                    added.append(target)
        for cand in new:
            db.add(_row(layout.name, cand, user_id))
        try:
            db.flush()
        except IntegrityError:
            raise ConflictError(f"a package of this batch is already indexed in {layout.name!r} with another file") from None
        revision, event = _commit_with_metadata(db, layout, "publish", [c.nevra for c in new + relink],
                                                separate_current=_has_retracted(db, layout.name))
    except BaseException:
        db.rollback()
        for path in added:
            path.unlink(missing_ok=True)
        raise
    metadata.prune(layout)
    result.revision, result.event_id = str(revision), event.id
    return result


@dataclass
class RetractResult:
    """What a retract did (``event_id`` None when the package was already retracted)."""

    repo: str
    nevra: str
    revision: str | None
    event_id: int | None


def retract(settings: Settings, nevra: str, repo: str | None = None, user: Any = None) -> RetractResult:
    """Hide ``nevra`` from the ``current`` view (new builds); it stays in ``all`` for rebuilding old locks."""
    layout = RepoLayout.of(settings, repo)
    wanted = parse_nevra(nevra)
    with repo_lock(layout, settings.repo_lock_timeout_s):
        with session_scope(settings) as db:
            row = find_package(db, layout.name, nevra)
            if row is None:
                raise NotFound(f"no package {wanted} in repository {layout.name!r}")
            if row.retracted:
                return RetractResult(layout.name, row.nevra, None, None)
            row.retracted, row.retracted_at = True, utcnow()
            db.flush()
            link = layout.current_dir / row.filename
            removed = link.is_file()
            if removed:
                link.unlink()
            try:
                revision, event = _commit_with_metadata(db, layout, "retract", [row.nevra], separate_current=True)
            except BaseException:
                db.rollback()
                if removed and not link.exists():
                    os.link(layout.all_dir / row.filename, link)
                raise
            metadata.prune(layout)
            return RetractResult(layout.name, row.nevra, str(revision), event.id)


@dataclass
class ReindexResult:
    """Counts of index rows added, updated and removed, and files that are not valid packages."""

    repo: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    revision: str | None = None


def reindex(settings: Settings, repo: str | None = None, regenerate_metadata: bool = False) -> ReindexResult:
    """Rebuild the index of ``repo`` from its folder (``all/`` = packages, absent from ``current/`` = retracted).

    With ``regenerate_metadata`` (or when a view has no metadata) the metadata is rebuilt in full too,
    recorded as an ``external`` event.
    """
    layout = RepoLayout.of(settings, repo).require()
    result = ReindexResult(repo=layout.name)
    folder = incoming_dir(settings)
    try:
        dbpath = keyring(settings.replace(repo_require_signature=False), folder)
        with repo_lock(layout, settings.repo_lock_timeout_s), session_scope(settings) as db:
            rows = {row.filename: row for row in db.scalars(select(RpmPackage).where(RpmPackage.repo == layout.name))}
            seen = set()
            for path in layout.package_files("all"):
                try:
                    header = read_header(path, dbpath, path.name)
                except InvalidPackage as exc:
                    result.skipped.append(str(exc))
                    continue
                if header.filename != path.name:
                    result.skipped.append(f"{path.name}: not named after its header ({header.filename})")
                    continue
                seen.add(path.name)
                cand = Candidate(path=path, label=path.name, header=header, sha256=sha256_of(path), size=path.stat().st_size)
                retracted = not (layout.current_dir / path.name).is_file()
                row = rows.get(path.name)
                if row is None:
                    new_row = _row(layout.name, cand, None)
                    new_row.published_at = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
                    new_row.retracted, new_row.retracted_at = retracted, (utcnow() if retracted else None)
                    db.add(new_row)
                    result.added.append(header.nevra)
                    continue
                fresh = _row(layout.name, cand, row.published_by_id)
                changed = False
                for attr in ("name", "epoch", "version", "release", "arch", "sha256", "size", "buildtime",
                             "summary", "requires", "provides"):
                    if getattr(row, attr) != getattr(fresh, attr):
                        setattr(row, attr, getattr(fresh, attr))
                        changed = True
                if row.retracted != retracted:
                    row.retracted, row.retracted_at = retracted, (utcnow() if retracted else None)
                    changed = True
                if changed:
                    result.updated.append(header.nevra)
            for filename, row in rows.items():
                if filename not in seen:
                    result.removed.append(row.nevra)
                    db.delete(row)
            db.flush()
            missing_md = any(metadata.read_revision(layout.view_dir(v)) is None for v in ("all", "current"))
            if regenerate_metadata or missing_md:
                revision, _event = _commit_with_metadata(db, layout, "external", result.added,
                                                         separate_current=_has_retracted(db, layout.name), full=True)
                result.revision = str(revision)
                metadata.prune(layout)
    finally:
        discard(folder)
    return result


__all__ = ["publish", "publish_staged", "retract", "reindex", "PublishResult", "PublishedPackage",
           "RetractResult", "ReindexResult", "RepoError"]
