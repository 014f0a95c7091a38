"""On-disk layout of a repository, and the inter-process lock that serialises changes to it.

::

    <repos_dir>/<repo>/
        all/              every package ever published (the real files, N-V-R.A.rpm) + repodata
        current/          hard links to the packages that are not retracted + repodata
        all/repodata      symlink -> ../.meta/<revision>/all/repodata      (swapped atomically)
        current/repodata  symlink -> ../.meta/<revision>/current/repodata  (or .../all/repodata)
        .meta/            metadata generations and staging folders
        .lock             fcntl.flock lock file: one writer at a time, across processes

``all`` is what reproducing an old lock uses (a retracted package stays installable there);
``current`` is what new builds resolve against.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from asci.config import Settings
from rpmrepo.errors import InvalidName, LockTimeout, NotFound

VIEWS = ("all", "current")
_REPO_RE = re.compile(r"[a-z0-9][a-z0-9_\-]{0,62}")


def check_repo_name(name: str) -> str:
    """Return ``name`` when it is a valid repository name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not _REPO_RE.fullmatch(name):
        raise InvalidName(f"repository name {name!r}: expected lower-case letters, digits, '-' and '_'")
    return name


def check_view(view: str) -> str:
    """Return ``view`` when it is ``all`` or ``current``."""
    if view not in VIEWS:
        raise InvalidName(f"repository view {view!r}: expected one of {', '.join(VIEWS)}")
    return view


@dataclass(frozen=True)
class RepoLayout:
    """Paths of one repository."""

    name: str
    root: Path

    @classmethod
    def of(cls, settings: Settings, repo: str | None) -> "RepoLayout":
        name = check_repo_name(repo or settings.default_repo)
        return cls(name=name, root=settings.repos_dir / name)

    @property
    def all_dir(self) -> Path:
        return self.root / "all"

    @property
    def current_dir(self) -> Path:
        return self.root / "current"

    @property
    def meta_dir(self) -> Path:
        return self.root / ".meta"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def view_dir(self, view: str) -> Path:
        return self.root / check_view(view)

    def exists(self) -> bool:
        return self.all_dir.is_dir()

    def require(self) -> "RepoLayout":
        """Self, or :class:`NotFound` when the repository was never created."""
        if not self.exists():
            raise NotFound(f"no repository {self.name!r}")
        return self

    def create(self) -> None:
        """Make the folders (idempotent)."""
        for path in (self.all_dir, self.current_dir, self.meta_dir):
            path.mkdir(parents=True, exist_ok=True)

    def package_files(self, view: str = "all") -> list[Path]:
        """The package files of a view, sorted by name."""
        folder = self.view_dir(view)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name.endswith(".rpm") and p.is_file())


def list_repos(settings: Settings) -> list[str]:
    """Names of the repositories that exist on disk."""
    if not settings.repos_dir.is_dir():
        return []
    return sorted(p.name for p in settings.repos_dir.iterdir() if _REPO_RE.fullmatch(p.name) and (p / "all").is_dir())


@contextlib.contextmanager
def repo_lock(layout: RepoLayout, timeout_s: float) -> Iterator[None]:
    """Hold the repository's exclusive lock (``fcntl.flock``), waiting at most ``timeout_s``."""
    layout.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"repository {layout.name!r} is busy (lock held for more than {timeout_s:.0f}s)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
