"""Change events of the repositories, consumed by ``ci/``.

Every publish and retract records a :class:`~rpmrepo.models.RepoEvent` (repository, NEVRAs,
metadata revision) in the same transaction as the index change; creating a repository records
``create``; the watcher records ``external`` events. Ids only increase and become visible in id
order: on PostgreSQL the inserting transaction
locks ``repo_events`` against other writers until it commits (readers are not blocked), so an
event with a lower id can never appear after a consumer has seen a higher one (SQLite serialises
writers anyway). A consumer remembers the last id it handled and asks for newer ones::

    for event in events_after(session, last_id):
        ...; last_id = event.id
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from rpmrepo.models import RepoEvent

KINDS = ("publish", "retract", "external", "create")


def record_event(db: Session, repo: str, kind: str, packages: list[str], revision: str | int) -> RepoEvent:
    """Add an event (flushed, so its id is known; committed with the caller's transaction, which
    should commit promptly: on PostgreSQL other event writers wait for it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("LOCK TABLE repo_events IN SHARE ROW EXCLUSIVE MODE"))
    event = RepoEvent(repo=repo, kind=kind, packages=list(packages), revision=str(revision))
    db.add(event)
    db.flush()
    return event


def events_after(db: Session, last_id: int = 0, limit: int = 100, repo: str | None = None) -> list[RepoEvent]:
    """Events with ``id > last_id``, oldest first, at most ``limit`` (optionally of one repository)."""
    query = select(RepoEvent).where(RepoEvent.id > last_id)
    if repo is not None:
        query = query.where(RepoEvent.repo == repo)
    return list(db.scalars(query.order_by(RepoEvent.id).limit(limit)))


def last_event(db: Session, repo: str) -> RepoEvent | None:
    """The newest event of ``repo``, or None."""
    return db.scalar(select(RepoEvent).where(RepoEvent.repo == repo).order_by(RepoEvent.id.desc()).limit(1))
