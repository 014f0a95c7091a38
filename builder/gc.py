"""Registry retention: delete the manifests of versions nobody may launch again, then reclaim blobs.

A version's manifest is deleted when it failed or was never promoted, is older than
``registry_gc_keep_days``, and is not protected. Never deleted: a version that is or was ever current
(``became_current_at`` is set: users relaunch old experiments' environments), one the caller names as
protected (``protected``: ``(environment, version)`` pairs that sessions or running build jobs
reference: the builder does not read those packages' tables, its caller asks them), base images, and
anything while a build of any environment is in progress. The version's record stays, marked
``deleted_at``; it no longer launches. Its reproductions (``VERSION-rN`` tags) go with it.

Blobs are then reclaimed by the registry's own garbage collector (``registry_gc_command``) with
writes paused: the proxy answers 503 to every write while ``registry-auth/writes-paused`` exists.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
from dataclasses import dataclass, field

from sqlalchemy import select

from asci.config import Settings
from asci.db import session_scope, utcnow
from asci.progress import LogSink
from builder import registry
from builder.errors import BuildError
from builder.models import Environment, EnvironmentVersion, VersionStatus
from builder.registry_setup import files_for


@dataclass
class Doomed:
    """A version whose manifest gc deletes."""

    id: int
    environment: str
    version: str
    status: str
    digest: str
    reproductions: list[str] = field(default_factory=list)  # digests of its VERSION-rN tags


@dataclass
class GcReport:
    deleted: list[Doomed]
    dry_run: bool
    blobs_deleted: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    collector_output: str = ""

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"{verb} {d.environment}:{d.version} ({d.status}, {d.digest[:19]}"
                 + (f", {len(d.reproductions)} reproductions" if d.reproductions else "") + ")"
                 for d in self.deleted]
        lines.append(f"{verb} {len(self.deleted)} manifests")
        blobs = "blobs eligible for deletion" if self.dry_run else "blobs deleted"
        reclaimed = f"; storage {self.bytes_before / 2**20:.1f} → {self.bytes_after / 2**20:.1f} MiB, " \
                    f"reclaimed {(self.bytes_before - self.bytes_after) / 2**20:.1f} MiB" if self.bytes_before else ""
        lines.append(f"{self.blobs_deleted} {blobs}{reclaimed}")
        return lines


def plan(settings: Settings, protected: set[tuple[str, str]], now: dt.datetime | None = None) -> list[Doomed]:
    """The versions whose manifests gc deletes (see the module's rules)."""
    cutoff = (now or utcnow()) - dt.timedelta(days=settings.registry_gc_keep_days)
    with session_scope(settings) as db:
        busy = db.scalars(select(EnvironmentVersion).where(
            EnvironmentVersion.status.in_((VersionStatus.BUILDING, VersionStatus.VERIFYING)))).first()
        if busy is not None:
            raise BuildError(f"{busy.environment.name} {busy.version} is being built; run gc when no build runs")
        rows = db.scalars(select(EnvironmentVersion).join(Environment).where(
            EnvironmentVersion.status.in_((VersionStatus.FAILED, VersionStatus.SUCCEEDED)),
            EnvironmentVersion.image_digest != "", EnvironmentVersion.deleted_at.is_(None),
            EnvironmentVersion.became_current_at.is_(None), EnvironmentVersion.created_at < cutoff)).all()
        return [Doomed(r.id, r.environment.name, r.version, r.status, r.image_digest,
                       [p.image_digest for p in r.reproductions if p.image_digest])
                for r in sorted(rows, key=lambda r: r.id)
                if r.version != r.environment.current_version and (r.environment.name, r.version) not in protected]


def storage_bytes(settings: Settings) -> int:
    folder = settings.registry_storage_dir
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def collect_blobs(settings: Settings, dry_run: bool, log: LogSink) -> tuple[int, str]:
    """Run the registry's garbage collector (writes paused unless ``dry_run``); returns
    (blobs deleted or eligible, output)."""
    command = shlex.split(settings.registry_gc_command.format(config=settings.registry_config_file))
    if dry_run:
        command.append("--dry-run")
    paused = files_for(settings).paused
    if not dry_run:
        paused.parent.mkdir(parents=True, exist_ok=True)
        paused.touch()
        log(f"registry writes paused ({paused})")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"registry garbage collector {command[0]} failed: {exc}") from None
    finally:
        if not dry_run:
            paused.unlink(missing_ok=True)
            log("registry writes resumed")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise BuildError(f"registry garbage collector exited {done.returncode}: {output.strip()[-500:]}")
    return len(re.findall(r"blob eligible for deletion", output)), output


def gc(settings: Settings, protected: set[tuple[str, str]], *, dry_run: bool = False, log: LogSink = print,
       now: dt.datetime | None = None) -> GcReport:
    """Delete the manifests :func:`plan` names (recording ``deleted_at``), then reclaim blobs."""
    doomed = plan(settings, protected, now)
    target = registry.connect(settings)
    report = GcReport(doomed, dry_run, bytes_before=storage_bytes(settings))
    for item in doomed:
        if dry_run:
            continue
        for digest in [item.digest, *item.reproductions]:
            registry.delete_manifest(target, item.environment, digest)
        with session_scope(settings) as db:
            db.get(EnvironmentVersion, item.id).deleted_at = utcnow()
        log(f"deleted {item.environment}:{item.version} ({item.status})")
    report.blobs_deleted, report.collector_output = collect_blobs(settings, dry_run, log)
    report.bytes_after = storage_bytes(settings)
    return report
