"""Who may publish where: repositories are created by an administrator, and publishing into one is
a right an administrator grants per user (``asci repo grant REPO USER``).

An HTTP upload needs all of: a token with the ``publish:<repo>`` (or ``publish:*``) scope, a
repository that exists, and a grant for that repository (administrators need none). The in-process
API (:func:`rpmrepo.publish`, used by ``asci rpm publish`` and the demo) acts as the machine's
administrator.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from asci.accounts import User
from asci.config import Settings
from asci.db import session_scope, utcnow
from rpmrepo import metadata
from rpmrepo.errors import ConflictError, NotFound, PublishForbidden
from rpmrepo.events import record_event
from rpmrepo.models import RepoGrant
from rpmrepo.store import RepoLayout, repo_lock


def publish_scope(repo: str) -> str:
    """The token scope that publishing into ``repo`` needs."""
    return f"publish:{repo}"


def create_repo(settings: Settings, name: str, exist_ok: bool = False) -> RepoLayout:
    """Create an empty repository (folders and empty metadata, served at once); administrators only."""
    layout = RepoLayout.of(settings, name)
    with repo_lock(layout, settings.repo_lock_timeout_s):
        if layout.exists():
            if exist_ok:
                return layout
            raise ConflictError(f"repository {layout.name!r} already exists")
        try:
            with session_scope(settings) as db:
                swap = metadata.regenerate(layout, separate_current=False, full=True)
                record_event(db, layout.name, "create", [], swap.revision)
        except BaseException:
            for folder in (layout.all_dir, layout.current_dir, layout.meta_dir):
                shutil.rmtree(folder, ignore_errors=True)  # nothing half-made stays behind
            raise
    return layout


def grant(db: Session, repo: str, user: User, by: User | None = None) -> bool:
    """Let ``user`` publish into ``repo``; False when the grant existed already."""
    if db.scalar(select(RepoGrant.id).where(RepoGrant.repo == repo, RepoGrant.user_id == user.id)) is not None:
        return False
    db.add(RepoGrant(repo=repo, user_id=user.id, granted_by_id=by.id if by is not None else None,
                     granted_at=utcnow()))
    db.flush()
    return True


def revoke(db: Session, repo: str, user: User) -> bool:
    """Take the right to publish into ``repo`` away from ``user``; False when there was none."""
    row = db.scalar(select(RepoGrant).where(RepoGrant.repo == repo, RepoGrant.user_id == user.id))
    if row is None:
        return False
    db.delete(row)
    db.flush()
    return True


@dataclass(frozen=True)
class GrantView:
    """One grant, for listing."""

    repo: str
    username: str
    granted_at: str
    granted_by: str | None


def list_grants(db: Session, repo: str | None = None) -> list[GrantView]:
    """Grants (of one repository), by repository and user name."""
    granter = aliased(User)
    statement = (select(RepoGrant.repo, User.username, RepoGrant.granted_at, granter.username)
                 .join(User, User.id == RepoGrant.user_id)
                 .outerjoin(granter, granter.id == RepoGrant.granted_by_id)
                 .order_by(RepoGrant.repo, User.username))
    if repo is not None:
        statement = statement.where(RepoGrant.repo == repo)
    return [GrantView(r, u, at.isoformat(), by) for r, u, at, by in db.execute(statement)]


def may_publish(db: Session, user: User, repo: str) -> bool:
    """Administrators publish anywhere; others where they hold a grant."""
    if user.is_admin:
        return True
    return db.scalar(select(RepoGrant.id).where(RepoGrant.repo == repo, RepoGrant.user_id == user.id)) is not None


def require_publisher(settings: Settings, db: Session, user: User, repo: str) -> RepoLayout:
    """The existing repository ``repo`` when ``user`` may publish into it; 404 or 403 otherwise."""
    layout = RepoLayout.of(settings, repo)
    if not layout.exists():
        raise NotFound(f"no repository {layout.name!r}; an administrator creates it (asci repo create {layout.name})")
    if not may_publish(db, user, layout.name):
        raise PublishForbidden(f"you may not publish into {layout.name!r}; an administrator grants it "
                               f"(asci repo grant {layout.name} {user.username})")
    return layout
