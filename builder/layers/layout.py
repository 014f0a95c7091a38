"""The layout of an environment's layers: which packages share a layer, and in which order.

Membership (:func:`assign`), as rpm-ostree's chunking does: without a previous layout, packages of
at least ``own_layer_min`` bytes get a layer each, largest first, as many as the budget allows; the
rest share a few groups chosen by a stable hash of the name, so a new small package changes one group.
With a previous layout every known package stays in its group (emptied groups disappear) and unknown
packages get their own layer when large, else the reserved group ``new``: a grouping change never
re-adds unchanged packages. The budget (``max_layers``, 64 like rpm-ostree's ``--max-layers``) counts
the base's layers and the ``meta`` layer; when the base grows, the two smallest groups merge.

Order (:func:`stack`): Docker's layer store is chained (a layer is reused on a node only when every
layer below it is the same), so the new stack keeps the longest prefix of the previous stack whose
layers are unchanged, and lays the rest above it, stable groups first: groups that changed least
often lowest, so a package that changes keeps changing at the top, where it costs nodes only itself.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

NEW = "new"  # reserved group for small packages unknown to the previous layout
META = "meta"  # the last layer: rpmdb, scriptlet output, lock, launchers, whiteouts
DEFAULT_MAX_LAYERS = 64
OWN_LAYER_MIN = 1024 * 1024
SMALL_GROUPS = 4


@dataclass
class Group:
    """A layer holding the files of ``packages``."""

    id: str
    packages: list[str]
    diff_id: str = ""  # sha256 of the uncompressed tar, recorded after the build
    digest: str = ""  # sha256 of the gzip blob pushed for that diff_id
    size: int = 0  # compressed size
    bytes: int = 0  # bytes of regular files (for planning)
    changes: int = 0  # versions in which this layer changed (for ordering)


@dataclass
class Layout:
    """Groups in stack order (bottom first, above the base; ``meta`` is not listed)."""

    groups: list[Group]
    max_layers: int = DEFAULT_MAX_LAYERS
    base_layers: int = 0
    meta: dict = field(default_factory=dict)  # diff_id, digest, size of the meta layer

    def group_of(self) -> dict[str, str]:
        return {p: g.id for g in self.groups for p in g.packages}

    def by_id(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    def to_json(self) -> dict:
        return {"max_layers": self.max_layers, "base_layers": self.base_layers, "meta": dict(self.meta),
                "groups": [asdict(g) for g in self.groups]}

    @classmethod
    def from_json(cls, data: dict | None) -> "Layout | None":
        if not data or not data.get("groups"):
            return None
        return cls([Group(**g) for g in data["groups"]], data.get("max_layers", DEFAULT_MAX_LAYERS),
                   data.get("base_layers", 0), dict(data.get("meta") or {}))


def budget_of(max_layers: int, base_layers: int) -> int:
    """How many package groups fit: the engine's limit less the base's layers and ``meta``."""
    budget = max_layers - base_layers - 1
    if budget < 2:
        raise ValueError(f"a budget of {max_layers} layers leaves no room above {base_layers} base layers")
    return budget


def assign(sizes: dict[str, int], previous: Layout | None, *, max_layers: int = DEFAULT_MAX_LAYERS,
           base_layers: int = 0, own_layer_min: int = OWN_LAYER_MIN, small_groups: int = SMALL_GROUPS) -> Layout:
    """Map every package of ``sizes`` (name → bytes) to a group within the budget (groups unordered)."""
    budget = budget_of(max_layers, base_layers)
    if previous is None:
        big = sorted((p for p, s in sizes.items() if s >= own_layer_min), key=lambda p: (-sizes[p], p))
        n_small = min(small_groups, max(1, budget - len(big)))
        big = big[:max(0, budget - n_small - 1)]  # one slot stays free for ``new``
        groups = [Group(f"pkg:{p}", [p]) for p in big]
        small: dict[int, list[str]] = {}
        for p in sorted(set(sizes) - set(big)):
            small.setdefault(zlib.crc32(p.encode()) % n_small, []).append(p)
        groups += [Group(f"small:{i}", small[i]) for i in sorted(small)]
    else:
        groups, known = [], set()
        for old in previous.groups:
            keep = [p for p in old.packages if p in sizes]
            known.update(keep)
            if keep:
                groups.append(Group(old.id, keep, old.diff_id, old.digest, old.size, changes=old.changes))
        reserved = next((g for g in groups if g.id == NEW), None)
        for p in sorted(set(sizes) - known, key=lambda p: (-sizes[p], p)):
            if sizes[p] >= own_layer_min and len(groups) + (reserved is None) < budget:
                groups.append(Group(f"pkg:{p}", [p]))
                continue
            if reserved is None:
                reserved = Group(NEW, [])
                groups.append(reserved)
            reserved.packages = sorted(reserved.packages + [p])
    for group in groups:
        group.bytes = sum(sizes.get(p, 0) for p in group.packages)
    while len(groups) > budget:  # the base grew: merge the two smallest groups
        groups.sort(key=lambda g: (g.bytes, g.id))
        a, b = groups[0], groups[1]
        groups = [Group(f"{a.id}+{b.id}", sorted(a.packages + b.packages), bytes=a.bytes + b.bytes,
                        changes=max(a.changes, b.changes))] + groups[2:]
    return Layout(groups, max_layers, base_layers)


def stack(layout: Layout, diff_ids: dict[str, str], previous: Layout | None) -> list[str]:
    """Put ``layout``'s groups in stack order given their new ``diff_ids``; update their records.

    The longest prefix of the previous stack whose groups are unchanged (same id, same packages,
    same diff_id) stays; the other groups are laid above it, least often changed first, then
    largest first. A group whose diff_id differs from the previous one counts one more change.
    """
    before = previous.by_id() if previous else {}
    for group in layout.groups:
        old = before.get(group.id)
        if old is not None and old.diff_id and old.diff_id != diff_ids.get(group.id):
            group.changes = old.changes + 1
    current = layout.by_id()
    kept: list[str] = []
    for old in (previous.groups if previous else []):
        group = current.get(old.id)
        if group is None or group.packages != old.packages or diff_ids.get(old.id) != old.diff_id:
            break
        kept.append(old.id)
    rest = sorted((g for g in layout.groups if g.id not in kept), key=lambda g: (g.changes, -g.bytes, g.id))
    order = kept + [g.id for g in rest]
    layout.groups = [current[i] for i in order]
    return order


def pull_cost(previous: Layout | None, layout: Layout) -> int:
    """Compressed bytes a node holding ``previous`` downloads for ``layout`` (chained layer store)."""
    kept = 0
    if previous is not None:
        for old, new in zip(previous.groups, layout.groups):
            if (old.id, old.diff_id) != (new.id, new.diff_id):
                break
            kept += 1
    return sum(g.size for g in layout.groups[kept:]) + int(layout.meta.get("size", 0))
