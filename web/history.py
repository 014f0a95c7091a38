"""Version history of an environment for the home page: dates, package changes, current-on-a-date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from builder.models import SUCCEEDED, Environment, EnvironmentVersion


@dataclass
class Change:
    name: str
    kind: str  # added | removed | changed
    old: str = ""
    new: str = ""


@dataclass
class VersionRow:
    version: str
    status: str
    created_at: dt.datetime
    became_current_at: dt.datetime | None
    is_current: bool
    changes: list[Change] = field(default_factory=list)
    first: bool = False


def _evra(pkg: dict) -> str:
    epoch = pkg.get("epoch") or 0
    evr = f"{pkg.get('version', '?')}-{pkg.get('release', '?')}"
    return f"{epoch}:{evr}" if epoch else evr


def package_changes(old_lock: dict | None, new_lock: dict | None) -> list[Change]:
    """Packages added, removed or changed between two locks (by name and arch)."""
    def index(lock: dict | None) -> dict[str, str]:
        rows = (lock or {}).get("packages") or []
        return {f"{p.get('name')}" + ("" if p.get("arch") in (None, "noarch", "x86_64") else f".{p['arch']}"): _evra(p)
                for p in rows if isinstance(p, dict) and p.get("name")}

    old, new = index(old_lock), index(new_lock)
    changes = [Change(name, "added", new=new[name]) for name in sorted(new.keys() - old.keys())]
    changes += [Change(name, "removed", old=old[name]) for name in sorted(old.keys() - new.keys())]
    changes += [Change(name, "changed", old=old[name], new=new[name])
                for name in sorted(old.keys() & new.keys()) if old[name] != new[name]]
    return sorted(changes, key=lambda c: c.name)


def _changes_via_builder(old: EnvironmentVersion, new: EnvironmentVersion) -> list[Change] | None:
    """``builder.diff.diff_locks`` in page terms (upgraded/downgraded/rebuilt, base image, recipe); None if unusable."""
    try:
        from builder.diff import diff_locks
        result = diff_locks(old.lock or {}, new.lock or {})
    except (ImportError, KeyError, TypeError, ValueError):  # an older or partial lock: compare ourselves
        return None
    changes = []
    for kind in ("added", "removed", "upgraded", "downgraded", "rebuilt"):
        for entry in getattr(result, kind):
            name = entry["name"] if entry.get("arch") in ("noarch", "x86_64", None) else f"{entry['name']}.{entry['arch']}"
            changes.append(Change(name, kind, entry.get("old") or "", entry.get("new") or ""))
    changes.sort(key=lambda c: c.name)
    changes += [Change(line, "other") for line in result.other]
    return changes


def history(environment: Environment) -> list[VersionRow]:
    """The environment's versions, newest first, each with its changes from the previous built one."""
    rows: list[VersionRow] = []
    previous: EnvironmentVersion | None = None
    for version in sorted(environment.versions, key=lambda v: v.id):
        if version.status != SUCCEEDED:
            continue
        if previous is None:
            changes = []
        else:
            changes = _changes_via_builder(previous, version)
            if changes is None:
                changes = package_changes(previous.lock, version.lock)
        rows.append(VersionRow(version.version, version.status, version.created_at, version.became_current_at,
                               version.version == environment.current_version, changes, first=previous is None))
        previous = version
    return list(reversed(rows))


def current_on(environment: Environment, day: dt.date) -> str | None:
    """The version that was current at the end of ``day`` (UTC), or None when none was yet."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.timezone.utc)
    best: tuple[dt.datetime, int, str] | None = None
    for version in environment.versions:
        if version.status != SUCCEEDED:
            continue
        since = version.became_current_at or version.finished_at or version.created_at
        if since is not None and since < end:
            key = (since, version.id, version.version)
            if best is None or key > best:
                best = key
    return best[2] if best else None
