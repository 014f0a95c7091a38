"""Compare the package sets of two locks: added, removed, upgraded, downgraded, rebuilt."""

from __future__ import annotations

from dataclasses import dataclass, field

from asci.nevra import format_evr
from builder.rpmvercmp import label_compare


def _evr(pkg: dict) -> str:
    return format_evr(pkg["epoch"], pkg["version"], pkg["release"])


@dataclass
class LockDiff:
    """Differences from an old lock to a new one (each entry a small dict)."""

    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    upgraded: list[dict] = field(default_factory=list)
    downgraded: list[dict] = field(default_factory=list)
    rebuilt: list[dict] = field(default_factory=list)  # same EVR, different bytes (never in one repo)
    unchanged: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # base image, recipe commit

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.upgraded or self.downgraded or self.rebuilt)

    def lines(self) -> list[str]:
        out = [f"added      {d['name']}.{d['arch']} {d['new']}" for d in self.added]
        out += [f"removed    {d['name']}.{d['arch']} {d['old']}" for d in self.removed]
        out += [f"upgraded   {d['name']}.{d['arch']} {d['old']} -> {d['new']}" for d in self.upgraded]
        out += [f"downgraded {d['name']}.{d['arch']} {d['old']} -> {d['new']}" for d in self.downgraded]
        out += [f"rebuilt    {d['name']}.{d['arch']} {d['new']} (sha256 changed)" for d in self.rebuilt]
        out += [f"changed    {line}" for line in self.other]
        return out or ["no package differences"]


def diff_locks(old: dict, new: dict) -> LockDiff:
    """What changed in the packages (keyed by name and arch) from ``old`` to ``new``."""
    before = {(p["name"], p["arch"]): p for p in old.get("packages", [])}
    after = {(p["name"], p["arch"]): p for p in new.get("packages", [])}
    result = LockDiff()
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        entry = {"name": key[0], "arch": key[1], "old": _evr(a) if a else None, "new": _evr(b) if b else None}
        if a is None:
            result.added.append(entry)
        elif b is None:
            result.removed.append(entry)
        else:
            order = label_compare((a["epoch"], a["version"], a["release"]), (b["epoch"], b["version"], b["release"]))
            if order < 0:
                result.upgraded.append(entry)
            elif order > 0:
                result.downgraded.append(entry)
            elif a.get("sha256") != b.get("sha256"):
                result.rebuilt.append(entry)
            else:
                result.unchanged.append(a.get("nevra", f"{key[0]}-{entry['old']}.{key[1]}"))
    for label, path in (("base image", ("base", "id")), ("recipe commit", ("recipe", "commit"))):
        x, y = old.get(path[0], {}).get(path[1]), new.get(path[0], {}).get(path[1])
        if x != y:
            result.other.append(f"{label} {x} -> {y}")
    return result
